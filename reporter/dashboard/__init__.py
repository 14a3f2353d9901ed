"""The live dashboard page: static HTML/JS/CSS served by the reporter itself.

:func:`dashboard_routes` gives the HTTP app two routes:

- ``GET /``: the page (``static/index.html``), with the refresh interval and
  the response-time threshold written into ``<body data-...>``; public, since
  the page holds no data: its script asks for a token and calls the JSON API;
- ``/dashboard/...``: the scripts, styles and icon (no framework, nothing
  fetched from the internet, so the page works on an offline dealer network).

Every response carries a Content-Security-Policy that allows only this
origin's scripts and the API, and forbids framing.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

logger = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"
ASSET_PREFIX = "/dashboard"
DEFAULT_REFRESH_S = 30.0
DEFAULT_THRESHOLD_MS = 200.0
MIN_REFRESH_S = 1.0
MAX_REFRESH_S = 3600.0

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


class DashboardError(ValueError):
    """A dashboard setting out of range; the message names it."""


def render_index(refresh_s: float, threshold_ms: float) -> str:
    """index.html with the settings filled in (validated: they land in HTML)."""
    if not math.isfinite(refresh_s) or not MIN_REFRESH_S <= refresh_s <= MAX_REFRESH_S:
        raise DashboardError(
            f"dashboard refresh_s must be between {MIN_REFRESH_S:g} and {MAX_REFRESH_S:g} "
            f"seconds, got {refresh_s!r}"
        )
    if not math.isfinite(threshold_ms) or threshold_ms <= 0:
        raise DashboardError(
            f"dashboard threshold_ms must be a positive number, got {threshold_ms!r}"
        )
    template = (STATIC_DIR / "index.html").read_text(encoding="utf-8")
    return template.replace("__REFRESH_S__", f"{refresh_s:g}").replace(
        "__THRESHOLD_MS__", f"{threshold_ms:g}"
    )


class _SecureStaticFiles(StaticFiles):
    """StaticFiles that adds the security headers to every answer."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: dict[str, object]) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))  # type: ignore[call-overload]
                headers += [(k.lower().encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]
                message = {**message, "headers": headers}
            await send(message)

        await super().__call__(scope, receive, send_with_headers)  # type: ignore[arg-type]


def dashboard_routes(
    refresh_s: float = DEFAULT_REFRESH_S, threshold_ms: float = DEFAULT_THRESHOLD_MS
) -> list[BaseRoute]:
    """The page at ``/`` and its assets under ``/dashboard``.

    ``refresh_s`` is the auto-refresh interval (the page URL's ``?refresh=``
    overrides it); ``threshold_ms`` is the response-time line drawn on the
    charts (ALERT_THRESHOLD_RESPONSE_TIME).
    """
    page = render_index(refresh_s, threshold_ms)

    async def index(request: Request) -> Response:
        # no-store: a reload picks up new settings and assets after an upgrade.
        headers = {**SECURITY_HEADERS, "Cache-Control": "no-store"}
        return HTMLResponse(page, headers=headers)

    logger.debug("dashboard served from %s, refresh every %ss", STATIC_DIR, refresh_s)
    return [
        Route("/", index, methods=["GET", "HEAD"], name="dashboard"),
        Mount(ASSET_PREFIX, app=_SecureStaticFiles(directory=STATIC_DIR), name="dashboard-assets"),
    ]
