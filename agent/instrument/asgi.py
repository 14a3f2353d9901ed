"""ASGI middleware: one RequestRecord per HTTP request, nothing else touched."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from agent.aggregate import UNMATCHED_ROUTE
from agent.instrument.recorder import Recorder, describe_error
from agent.instrument.routes import (
    asgi_framework_route,
    asgi_unmatched,
    clip_route,
    template_from_path,
)
from agent.instrument.sink import Sink
from dealerpulse.clock import Clock

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
RouteResolver = Callable[[Scope], str | None]

# Status of a request whose client went away before an answer (nginx's convention).
CLIENT_CLOSED = 499


class DealerPulseASGIMiddleware:
    """Wraps an ASGI app; records route template, method, status, duration, exception.

    ``route_resolver(scope)`` names the route when the framework does not (it
    runs after the app, so it sees what the app stored in the scope); return
    None to fall back to the default id-masking of the path.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        sink: Sink | None = None,
        route_resolver: RouteResolver | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.app = app
        self._route_resolver = route_resolver
        self.recorder = Recorder(sink, clock)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        started = self.recorder.start()
        status: object = None
        error = ""

        async def send_and_watch(message: Message) -> None:
            nonlocal status
            if message.get("type") == "http.response.start":
                status = message.get("status", "missing")
            await send(message)

        try:
            await self.app(scope, receive, send_and_watch)
        except Exception as exc:
            error = describe_error(exc)
            raise
        finally:
            self.recorder.finish(
                started,
                lambda: self._route(scope),
                str(scope.get("method", "")),
                recorded_status(status, error),
                error,
            )

    def _route(self, scope: Scope) -> str:
        template = asgi_framework_route(scope)
        if template is None and self._route_resolver is not None:
            template = self._route_resolver(scope)
        if isinstance(template, str) and template:
            return clip_route(template)
        if asgi_unmatched(scope):
            return UNMATCHED_ROUTE
        return template_from_path(str(scope.get("path", "/")))


def recorded_status(status: object, error: str) -> int:
    """The status a request's record carries: the app's when it is an HTTP status; 500
    when the app raised or started a response no server can send (status 1, "200",
    none at all); 499 when it was cancelled (client gone) before answering."""
    if type(status) is int and 100 <= status <= 599:
        return status
    if error or status is not None:
        return 500
    return CLIENT_CLOSED
