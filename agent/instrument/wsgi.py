"""WSGI middleware: one RequestRecord per request, timed until the body is closed."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import Any

from agent.aggregate import UNMATCHED_ROUTE
from agent.instrument.recorder import Recorder, describe_error
from agent.instrument.routes import (
    clip_route,
    template_from_path,
    werkzeug_request,
    wsgi_framework_route,
    wsgi_path,
    wsgi_unmatched,
)
from agent.instrument.sink import Sink
from dealerpulse.clock import Clock

Environ = dict[str, Any]
ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]
StartResponse = Callable[..., Callable[[bytes], object]]
WSGIApp = Callable[[Environ, StartResponse], Iterable[bytes]]
RouteResolver = Callable[[Environ], str | None]


class DealerPulseWSGIMiddleware:
    """Wraps a WSGI app; records route template, method, status, duration, exception.

    The duration runs until the server closes the response body, so streamed
    bodies count in full. ``route_resolver(environ)`` names the route when the
    framework does not; return None to fall back to id-masking of the path.
    """

    def __init__(
        self,
        app: WSGIApp,
        *,
        sink: Sink | None = None,
        route_resolver: RouteResolver | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.app = app
        self._route_resolver = route_resolver
        self.recorder = Recorder(sink, clock)

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        exchange = _Exchange(self, environ, start_response)
        try:
            body = self.app(environ, exchange.start_response)
        except Exception as exc:
            exchange.fail(exc)
            exchange.finish()
            raise
        return _ObservedBody(body, exchange)

    def route(self, environ: Environ, request: object | None) -> str:
        """``request``: the framework's request object, caught during the request."""
        request = request or werkzeug_request(environ)
        template = wsgi_framework_route(request)
        if template is None and self._route_resolver is not None:
            template = self._route_resolver(environ)
        if isinstance(template, str) and template:
            return clip_route(template)
        if wsgi_unmatched(request):
            return UNMATCHED_ROUTE
        return template_from_path(wsgi_path(environ))


class _Exchange:
    """One request's state between the app call and the close of its body."""

    __slots__ = (
        "_environ",
        "_finished",
        "_middleware",
        "_request",
        "_start_response",
        "error",
        "started",
        "status",
    )

    def __init__(
        self, middleware: DealerPulseWSGIMiddleware, environ: Environ, start: StartResponse
    ) -> None:
        self._middleware = middleware
        self._environ = environ
        self._start_response = start
        self._request: object | None = None
        self._finished = False
        self.status = 0
        self.error = ""
        self.started = middleware.recorder.start()

    def start_response(
        self, status: str, headers: list[tuple[str, str]], exc_info: ExcInfo | None = None
    ) -> Callable[[bytes], object]:
        try:
            self.status = int(status[:3])
            self._request = werkzeug_request(self._environ)
        except Exception:  # a malformed status is the server's to refuse, not ours
            self.status = 0
        return self._start_response(status, headers, exc_info)

    def fail(self, exc: BaseException) -> None:
        self.error = describe_error(exc)

    def finish(self) -> None:
        if self._finished:
            return
        self._finished = True
        # No (valid) status means the app raised before answering: the server sends 500.
        status = self.status if 100 <= self.status <= 599 else 500
        self._middleware.recorder.finish(
            self.started,
            lambda: self._middleware.route(self._environ, self._request),
            str(self._environ.get("REQUEST_METHOD", "")),
            status,
            self.error,
        )


class _ObservedBody:
    """The app's body, passed through; records the request when the server closes it."""

    def __init__(self, body: Iterable[bytes], exchange: _Exchange) -> None:
        self._body = body
        self._exchange = exchange

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from self._body
        except Exception as exc:
            self._exchange.fail(exc)
            raise

    def close(self) -> None:
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        finally:
            self._exchange.finish()
