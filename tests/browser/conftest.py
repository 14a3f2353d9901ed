"""Fixtures of the browser tests: headless Chromium (Selenium) and the real reporter app.

The page is served by the real HTTP app (:func:`reporter.http.app.create_app`)
over the real :class:`reporter.core.ReporterCore` and a SQLite store filled
with :mod:`.dataset`, by the reporter's HttpServer (uvicorn) on
127.0.0.1:<free port>. Skip/fail rule for a missing browser: :mod:`.harness`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from gateway.harness import served

from collector.store import open_store
from dealerpulse.clock import FakeClock

from .dataset import NOW, fill
from .harness import LAPTOP, Dashboard, new_driver, require_browser


@pytest.fixture(scope="session")
def _driver() -> Iterator[Any]:
    require_browser()
    driver = new_driver()
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def driver(_driver: Any) -> Iterator[Any]:
    """The session's Chromium, reset: laptop size, empty logs, a blank tab state."""
    _driver.set_window_size(*LAPTOP)
    _driver.get("about:blank")
    _driver.get_log("browser")  # drop what earlier tests left
    yield _driver
    # The page keeps the token, dealer and range per tab and origin: forget them.
    _driver.execute_script("try { sessionStorage.clear(); } catch (error) {}")
    _driver.get("about:blank")


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dashboard]:
    """The real reporter app over a filled SQLite store, time frozen at dataset.NOW."""
    require_browser()
    from reporter.core import ReporterCore
    from reporter.http.app import create_app
    from reporter.http.settings import HttpSettings

    clock = FakeClock(NOW)
    url = f"sqlite:///{tmp_path_factory.mktemp('dashboard') / 'dealerpulse.db'}"
    store = open_store(url, clock=clock, pool_size=5)
    try:
        tokens = fill(store)
        core = ReporterCore(store, clock)
        # Time stands still here, so the rate limit window never ends: lift the limit.
        settings = HttpSettings(rate_limit_requests=1_000_000)
        with served(create_app(core, store, settings, clock)) as port:
            yield Dashboard(f"http://127.0.0.1:{port}", tokens, store, clock)
    finally:
        store.close()
