"""What the browser tests share: where Chromium is, a served app, screenshots.

Chromium and chromedriver are the Debian packages (``make test`` installs
them where it can: ``make browser-deps``). When they are missing the tests
are skipped with the reason, except under ``CI=true``, where they fail:
CI must never go green without the browser tests.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from collector.store import SQLAlchemyMetricStore
from dealerpulse.clock import FakeClock

from .dataset import Tokens

CHROMIUM = Path(os.environ.get("DEALERPULSE_CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("DEALERPULSE_CHROMEDRIVER", "/usr/bin/chromedriver"))
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
WAIT_S = 20.0
LAPTOP = (1366, 768)
TABLET = (768, 1024)


def missing_browser(chromium: Path = CHROMIUM, chromedriver: Path = CHROMEDRIVER) -> str | None:
    """Why the browser tests cannot run with these binaries, or None."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[dev]')"
    for path, package in ((chromium, "chromium"), (chromedriver, "chromium-driver")):
        if not (path.is_file() and os.access(path, os.X_OK)):
            return f"{path} not found: install the Debian package {package} (make browser-deps)"
    return None


def skip_or_fail(reason: str | None) -> None:
    """Nothing when ``reason`` is None; else skip, or fail under CI=true."""
    if reason is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (browser tests are mandatory under CI=true)")
    pytest.skip(reason)


@functools.cache
def _missing_here() -> str | None:
    return missing_browser()


def require_browser() -> None:
    skip_or_fail(_missing_here())


def new_driver() -> Any:
    """Headless Chromium through the system chromedriver, console logs kept."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-extensions",
        "--no-first-run",
        f"--window-size={LAPTOP[0]},{LAPTOP[1]}",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)


@dataclass(frozen=True)
class Dashboard:
    """The served app and what the tests need to drive it."""

    url: str
    tokens: Tokens
    store: SQLAlchemyMetricStore
    clock: FakeClock

    def page(self, token: str | None = None, **params: str) -> str:
        query = dict(params)
        if token is not None:
            query["token"] = token
        suffix = "&".join(f"{key}={value}" for key, value in query.items())
        return f"{self.url}/?{suffix}" if suffix else f"{self.url}/"


def save_artifact(driver: Any, name: str) -> Path:
    """A full-page screenshot under test-artifacts/ (gitignored), at the current width."""
    ARTIFACTS.mkdir(exist_ok=True)
    height = int(driver.execute_script("return document.documentElement.scrollHeight"))
    size = driver.get_window_size()
    driver.set_window_size(size["width"], max(size["height"], height + 150))
    path = ARTIFACTS / name
    try:
        assert driver.save_screenshot(str(path)), f"cannot write {path}"
    finally:
        driver.set_window_size(size["width"], size["height"])
    return path
