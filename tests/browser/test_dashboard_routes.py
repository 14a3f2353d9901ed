"""The dashboard's routes without a browser: the page, its assets, its settings.

Served by a real uvicorn (the reporter's HttpServer) on 127.0.0.1; no
Chromium needed, so these run everywhere.
"""

from __future__ import annotations

import fnmatch
import http.client
import math
import re
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from gateway.harness import served
from starlette.applications import Starlette

from reporter.dashboard import STATIC_DIR, DashboardError, dashboard_routes, render_index

from .harness import missing_browser, skip_or_fail

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes


def fetch(port: int, path: str) -> Reply:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        headers = {key.lower(): value for key, value in response.getheaders()}
        return Reply(response.status, headers, response.read())
    finally:
        connection.close()


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    app = Starlette(routes=dashboard_routes(refresh_s=5, threshold_ms=250))
    with served(app) as bound:
        yield bound


def test_the_page_carries_its_settings_and_a_strict_content_security_policy(port: int) -> None:
    reply = fetch(port, "/")

    assert reply.status == 200
    assert reply.headers["content-type"].startswith("text/html")
    page = reply.body.decode()
    assert 'data-refresh-s="5"' in page
    assert 'data-threshold-ms="250"' in page
    policy = reply.headers["content-security-policy"]
    assert "script-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy
    assert reply.headers["referrer-policy"] == "no-referrer"  # a ?token= never leaks


def _assets_of(page: str) -> set[str]:
    """Every asset the page loads: its <link>/<script> URLs and the modules they import."""
    found = set(re.findall(r'(?:href|src)="(/dashboard/[^"]+)"', page))
    pending = [url for url in found if url.endswith(".js")]
    while pending:  # bounded: each module is read once
        source = (STATIC_DIR / Path(pending.pop()).name).read_text()
        for name in re.findall(r'from "\./([\w.-]+\.js)"', source):
            url = f"/dashboard/{name}"
            if url not in found:
                found.add(url)
                pending.append(url)
    return found


def test_every_asset_the_page_needs_is_served_with_its_type(port: int) -> None:
    assets = _assets_of(fetch(port, "/").body.decode())
    assert {"/dashboard/app.js", "/dashboard/app.css", "/dashboard/charts.js"} <= assets

    for url in sorted(assets):
        reply = fetch(port, url)
        assert reply.status == 200, url
        kind = reply.headers["content-type"]
        # A module script with another type is refused by the browser.
        expected = {".js": "javascript", ".css": "text/css", ".svg": "image/svg+xml"}
        assert expected[Path(url).suffix] in kind, (url, kind)
        assert "content-security-policy" in reply.headers, url


def test_an_unknown_asset_is_404(port: int) -> None:
    assert fetch(port, "/dashboard/nope.js").status == 404
    assert fetch(port, "/dashboard/../__init__.py").status == 404


def test_every_static_file_is_packaged() -> None:
    """A file pyproject's package-data misses would be absent from an installed reporter."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["*"]
    for path in STATIC_DIR.iterdir():
        assert any(fnmatch.fnmatch(path.name, p) for p in patterns), path.name


@pytest.mark.parametrize(
    ("refresh_s", "threshold_ms", "named"),
    [
        (0.0, 200.0, "refresh_s"),
        (0.5, 200.0, "refresh_s"),
        (3601.0, 200.0, "refresh_s"),
        (math.nan, 200.0, "refresh_s"),
        (math.inf, 200.0, "refresh_s"),
        (30.0, 0.0, "threshold_ms"),
        (30.0, -5.0, "threshold_ms"),
        (30.0, math.nan, "threshold_ms"),
    ],
)
def test_bad_settings_are_refused_naming_the_setting(
    refresh_s: float, threshold_ms: float, named: str
) -> None:
    with pytest.raises(DashboardError, match=named):
        render_index(refresh_s, threshold_ms)


def test_settings_are_written_as_plain_numbers() -> None:
    page = render_index(1.5, 180.0)
    assert 'data-refresh-s="1.5"' in page
    assert 'data-threshold-ms="180"' in page
    assert "__" not in re.sub(r"<!--.*?-->", "", page)  # no placeholder left


def test_a_missing_browser_skips_locally_and_fails_under_ci(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reason = missing_browser(tmp_path / "chromium", tmp_path / "chromedriver")
    assert reason is not None
    assert "chromium" in reason
    assert "make browser-deps" in reason

    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="chromium"):
        skip_or_fail(reason)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="mandatory under CI=true"):
        skip_or_fail(reason)
    skip_or_fail(None)  # a browser present: nothing happens, CI or not
