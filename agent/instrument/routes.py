"""Route templates and methods: bounded names for the series the agent aggregates.

The route template comes from the framework's matched route where one is
available (Starlette/FastAPI ``scope["route"]``, Flask's ``request.url_rule``),
else from a resolver the dealer configures, else from the raw path with id-like
segments (numbers, UUIDs, hex ids, VINs) replaced by ``{id}``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from agent.aggregate import MAX_ROUTE_CHARS

STANDARD_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"}
)
# Anything else a client sends is folded, so junk methods cannot add series.
OTHER_METHOD = "OTHER"
ID_PLACEHOLDER = "{id}"

_ID_SEGMENT = re.compile(
    r"""^(?:
        \d+                                                   # 42
      | [0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}  # UUID
      | [0-9a-f]{16,}                                         # long hex (ObjectId, hashes)
      | (?=[a-f]*\d)[0-9a-f]{8,}                              # hex with a digit: 5f3a9c1e
      | (?=[a-hj-npr-z]*\d)(?=\d*[a-hj-npr-z])[a-hj-npr-z0-9]{17}  # VIN
    )$""",
    re.IGNORECASE | re.VERBOSE,
)
# "{vehicle_id:int}" (Starlette) -> "{vehicle_id}"
_STARLETTE_PARAM = re.compile(r"\{(\w+):[^{}]*\}")
# "<int:vehicle_id>" or "<vehicle_id>" (Flask/werkzeug) -> "{vehicle_id}"
_WERKZEUG_PARAM = re.compile(r"<(?:[^<>:]+(?:\([^<>]*\))?:)?(\w+)>")


def normalize_method(method: str) -> str:
    upper = method.upper()
    return upper if upper in STANDARD_METHODS else OTHER_METHOD


def clip_route(route: str) -> str:
    """Make any string a valid route: printable, non-empty, at most MAX_ROUTE_CHARS."""
    if not route.isprintable():
        route = "".join(c if c.isprintable() else "?" for c in route)
    return route[:MAX_ROUTE_CHARS] or "/"


@lru_cache(maxsize=4096)
def template_from_path(path: str) -> str:
    """'/api/vehicles/1HGCM82633A004352/photos/7' -> '/api/vehicles/{id}/photos/{id}'."""
    segments = path.split("/")
    masked = [ID_PLACEHOLDER if _ID_SEGMENT.match(s) else s for s in segments]
    return clip_route("/".join(masked))


def normalize_template(template: str) -> str:
    template = _STARLETTE_PARAM.sub(r"{\1}", template)
    return clip_route(_WERKZEUG_PARAM.sub(r"{\1}", template))


def asgi_framework_route(scope: Mapping[str, Any]) -> str | None:
    """The template of the route Starlette (or FastAPI) matched, with any mount prefix."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    if not isinstance(path, str):
        return None
    # Mounts leave their matched prefix in root_path, beyond the app's own root_path.
    root_path = str(scope.get("root_path", ""))
    app_root_path = str(scope.get("app_root_path", root_path))
    prefix = root_path[len(app_root_path) :] if root_path.startswith(app_root_path) else ""
    prefix = template_from_path(prefix) if prefix else ""
    if hasattr(route, "routes"):  # the request ended in a mounted app (static files...)
        return normalize_template(prefix + "/{path}")
    return normalize_template(prefix + path)


def asgi_unmatched(scope: Mapping[str, Any]) -> bool:
    """A Starlette router saw the request and no route matched it."""
    return "router" in scope and "route" not in scope


def werkzeug_request(environ: Mapping[str, Any]) -> object | None:
    """The werkzeug/Flask request object, while the app handles the request.

    Flask clears ``environ["werkzeug.request"]`` when its request context ends,
    before the response body is sent: read it from start_response.
    """
    return environ.get("werkzeug.request")


def wsgi_framework_route(request: object | None) -> str | None:
    """Flask's matched rule (request.url_rule.rule), blueprint prefix included."""
    rule = getattr(getattr(request, "url_rule", None), "rule", None)
    return normalize_template(rule) if isinstance(rule, str) else None


def wsgi_unmatched(request: object | None) -> bool:
    """Flask routed the request and no rule matched (url_rule stays None)."""
    return request is not None and getattr(request, "url_rule", False) is None


def wsgi_path(environ: Mapping[str, Any]) -> str:
    # PEP 3333 hands over the raw bytes as latin-1; the app's paths are UTF-8.
    raw = str(environ.get("PATH_INFO", "")) or "/"
    try:
        return raw.encode("latin-1").decode("utf-8", "replace")
    except UnicodeEncodeError:
        return raw
