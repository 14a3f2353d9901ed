"""The reporter's HTTP application: JSON API, /metrics, /openapi.json and the dashboard.

Every ``/api`` request goes through :meth:`Gateway.endpoint`: rate limit
(per client, before any database work), authentication, the endpoint, and
the error envelope. An unexpected exception is logged (and sent to Sentry
when configured) and answered with a 500 envelope that holds no details.
The dashboard's static files, /metrics and /openapi.json are not rate
limited.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from collector.abc import StoreError, UnknownDealer
from collector.alerting.errors import RuleError
from collector.alerting.manage import Conflict, NotFound
from collector.auth import Role
from collector.ingest.errors import StoreUnavailable
from collector.sentry import report_exception
from collector.store import SQLAlchemyMetricStore
from dealerpulse.clock import Clock, SystemClock
from reporter.core import NotAvailable
from reporter.http.api import MAX_BODY_BYTES, Api
from reporter.http.auth import HttpAuth, Principal, client_key
from reporter.http.errors import (
    ApiError,
    Conflicting,
    Forbidden,
    InvalidArgument,
    NotFoundError,
    RateLimited,
    Unavailable,
    failure,
    internal_error,
)
from reporter.http.metrics import HttpMetrics, StoreMetrics
from reporter.http.openapi import openapi_document
from reporter.http.ratelimit import FixedWindowRateLimiter
from reporter.http.settings import HttpSettings
from reporter.model import RangeError, Reporter

logger = logging.getLogger(__name__)

Handler = Callable[[Request, Principal], Awaitable[Response]]

# Domain errors -> API errors (the order matters: subclasses first).
_DOMAIN_ERRORS: tuple[tuple[type[Exception], type[ApiError]], ...] = (
    (NotFound, NotFoundError),
    (UnknownDealer, NotFoundError),
    (NotAvailable, Unavailable),
    (Conflict, Conflicting),
    (RuleError, InvalidArgument),
    (RangeError, InvalidArgument),
    (StoreUnavailable, Unavailable),
    (StoreError, Unavailable),
)


class Gateway:
    """Rate limit, authentication and error envelope around every API endpoint."""

    def __init__(self, auth: HttpAuth, limiter: FixedWindowRateLimiter) -> None:
        self._auth = auth
        self._limiter = limiter

    def endpoint(self, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def answer(request: Request) -> Response:
            decision = self._limiter.hit(client_key(request))
            try:
                if not decision.allowed:
                    raise RateLimited(
                        f"more than {decision.limit} requests in {decision.window_s:g} s; "
                        f"retry after {decision.reset_s} s"
                    )
                response = await handler(request, await self._auth.caller(request))
            except Exception as exc:
                response = error_response(request, exc)
            response.headers.update(decision.headers())
            return response

        answer.__name__ = handler.__name__
        return answer


def error_response(request: Request, exc: Exception) -> Response:
    """The envelope for ``exc``; unexpected ones are logged with their trace, not shown."""
    if isinstance(exc, ApiError):
        return failure(exc)
    for kind, api_error in _DOMAIN_ERRORS:
        if isinstance(exc, kind):
            return failure(api_error(str(exc)))
    if isinstance(exc, HTTPException):
        return failure(ApiError(str(exc.detail), status=exc.status_code, code="invalid_argument"))
    logger.error("unexpected error answering %s %s", request.method, request.url.path, exc_info=exc)
    report_exception(exc)
    return internal_error()


class HttpMetricsMiddleware:
    """Counts and times every request by route template (``other`` for unknown paths)."""

    def __init__(self, app: ASGIApp, metrics: HttpMetrics) -> None:
        self._app = app
        self._metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self._app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "other"
            self._metrics.observe(scope["method"], template, status, time.perf_counter() - started)


def create_app(
    reporter: Reporter,
    store: SQLAlchemyMetricStore,
    settings: HttpSettings | None = None,
    clock: Clock | None = None,
) -> Starlette:
    """The HTTP application over ``reporter`` (analytics, reports) and ``store`` (tokens, alerts).

    ``store.engine`` holds the alert rules and alerts, as in the collector.
    """
    settings = settings or HttpSettings()
    clock = clock or SystemClock()
    registry = CollectorRegistry()
    http_metrics = HttpMetrics(registry)
    registry.register(StoreMetrics(store.engine, clock))
    limiter = FixedWindowRateLimiter(
        settings.rate_limit_requests,
        settings.rate_limit_window_s,
        clock,
        settings.rate_limit_max_clients,
    )
    auth = HttpAuth(store, clock, settings.auth_cache_ttl_s)
    gateway = Gateway(auth, limiter)
    api = Api(reporter, store, clock, settings.auth_cache_ttl_s)
    app = Starlette(
        routes=[*_api_routes(gateway, api), *_public_routes(registry, auth), *_dashboard(settings)],
        exception_handlers={HTTPException: _http_exception, Exception: _unhandled},
        max_body_size=MAX_BODY_BYTES,
    )
    app.add_middleware(HttpMetricsMiddleware, metrics=http_metrics)
    return app


def _api_routes(gateway: Gateway, api: Api) -> list[BaseRoute]:
    on = gateway.endpoint
    return [
        Route("/api/ai/performance-monitoring", on(api.performance_monitoring), methods=["GET"]),
        Route("/api/ai/performance-analytics", on(api.performance_analytics), methods=["GET"]),
        Route("/api/ai/performance-alerts", on(api.list_rules), methods=["GET"]),
        Route("/api/ai/performance-alerts", on(api.create_rule), methods=["POST"]),
        Route("/api/ai/alerts", on(api.list_alerts), methods=["GET"]),
        Route("/api/ai/alerts/{alert_id}/acknowledge", on(api.acknowledge_alert), methods=["POST"]),
        Route("/api/ai/reports", on(api.list_reports), methods=["GET"]),
        Route("/api/ai/reports/{report_id}", on(api.get_report), methods=["GET"]),
        Route("/api/dealers", on(api.list_dealers), methods=["GET"]),
    ]


def _public_routes(registry: CollectorRegistry, auth: HttpAuth) -> list[BaseRoute]:
    document = openapi_document()

    async def metrics(request: Request) -> Response:
        # Its labels name every dealer and agent: admins only (Prometheus sends the
        # token with `authorization: {credentials: ...}` in its scrape config).
        try:
            caller = await auth.caller(request)
            if caller.role is not Role.ADMIN:
                raise Forbidden("/metrics shows every dealer: it needs an admin token")
        except ApiError as error:
            return failure(error)
        # Collecting reads the store: off the event loop.
        body = await asyncio.to_thread(generate_latest, registry)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    async def openapi(request: Request) -> Response:
        return JSONResponse(document)

    return [
        Route("/metrics", metrics, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
    ]


def _dashboard(settings: HttpSettings) -> list[BaseRoute]:
    # Imported here: the page is another helper's module and optional for the API.
    from reporter.dashboard import dashboard_routes

    return dashboard_routes(settings.dashboard_refresh_s, settings.alert_threshold_response_time)


async def _http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if request.url.path.startswith("/api/"):
        code = "not_found" if exc.status_code == 404 else "invalid_argument"
        return failure(ApiError(str(exc.detail), exc.headers, status=exc.status_code, code=code))
    return PlainTextResponse(str(exc.detail), status_code=exc.status_code, headers=exc.headers)


async def _unhandled(request: Request, exc: Exception) -> Response:
    logger.error("unexpected error answering %s %s", request.method, request.url.path, exc_info=exc)
    report_exception(exc)
    return internal_error()
