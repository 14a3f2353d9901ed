"""Fuzzing the ASGI and WSGI middleware with odd requests and odd apps.

Scopes/environs with arbitrary paths, methods, headers and root paths; apps
that answer any status (valid or not), answer nothing, or raise. Properties:

- the middleware never changes what the app does: the same messages reach the
  server, the same exception propagates;
- exactly one record per request, and it survives the real path to the agent
  (the intake wire encoding, the agent's decoder, the endpoint aggregator):
  a bounded, printable route, a normalised method, a status in 100..599.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.aggregate import MAX_ROUTE_CHARS, EndpointAggregator, RequestRecord
from agent.instrument import DealerPulseASGIMiddleware, DealerPulseWSGIMiddleware
from agent.instrument.asgi import Message, Receive, Scope, Send
from agent.instrument.routes import OTHER_METHOD, STANDARD_METHODS
from agent.instrument.wire import decode_line, encode_record
from dealerpulse.clock import FakeClock

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
tried: dict[str, int] = {}


def count(name: str) -> None:
    tried[name] = tried.get(name, 0) + 1


@pytest.fixture(scope="module", autouse=True)
def _report() -> Iterator[None]:
    yield
    print(f"\nmiddleware fuzz inputs tried: {tried}")


class AgentPathSink:
    """Each record takes the real road to the agent: wire encoding, decoding, aggregation."""

    def __init__(self) -> None:
        self.records: list[RequestRecord] = []
        self.aggregator = EndpointAggregator()

    def offer(self, record: RequestRecord) -> bool:
        decoded = decode_line(encode_record(record).decode())
        self.aggregator.record(decoded)
        self.records.append(decoded)
        return True


class AppFailed(Exception):
    pass


def assert_one_sound_record(sink: AgentPathSink, failures: int) -> RequestRecord:
    assert failures == 0, "the middleware failed to record a request"
    [record] = sink.records
    assert 0 < len(record.route) <= MAX_ROUTE_CHARS and record.route.isprintable()
    assert record.method in STANDARD_METHODS | {OTHER_METHOD}
    assert 100 <= record.status_code <= 599
    stats = sink.aggregator.drain(record.time_ms + 1)
    assert sum(s.count for s in stats) == 1
    return record


TEXT = st.text(max_size=120)
ODD_STATUS = st.one_of(
    st.integers(100, 599), st.integers(-(2**40), 2**40), st.none(), st.text(max_size=5), st.floats()
)
HEADERS = st.lists(st.tuples(st.binary(max_size=30), st.binary(max_size=60)), max_size=5)


@st.composite
def asgi_scopes(draw: st.DrawFn) -> Scope:
    scope: Scope = {
        "type": "http",
        "method": draw(st.one_of(st.sampled_from(sorted(STANDARD_METHODS)), TEXT)),
        "path": draw(st.one_of(TEXT, st.just("/api/vehicles/1HGCM82633A004352"))),
        "raw_path": draw(st.binary(max_size=60)),
        "headers": draw(HEADERS),
        "query_string": draw(st.binary(max_size=30)),
    }
    for key in ("root_path", "app_root_path"):
        if draw(st.booleans()):
            scope[key] = draw(TEXT)
    if draw(st.booleans()):
        # What a framework leaves behind: a route object with any kind of path.
        scope["route"] = type("Route", (), {"path": draw(st.one_of(TEXT, st.integers()))})()
    if draw(st.booleans()):
        scope["router"] = object()
    return scope


@FUZZ
@given(scope=asgi_scopes(), status=ODD_STATUS, raises=st.booleans())
def test_asgi_middleware_passes_everything_through_and_records_once(
    scope: Scope, status: Any, raises: bool
) -> None:
    count("asgi requests")
    sink = AgentPathSink()
    sent: list[Message] = []
    start: Message = {"type": "http.response.start", "status": status, "headers": []}

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if status is not None:
            await send(start)
            await send({"type": "http.response.body", "body": b"ok"})
        if raises:
            raise AppFailed("app failed")

    async def receive() -> Message:
        return {"type": "http.request", "body": b""}

    async def send(message: Message) -> None:
        sent.append(message)

    middleware = DealerPulseASGIMiddleware(app, sink=sink, clock=FakeClock())
    if raises:
        with pytest.raises(AppFailed):
            asyncio.run(middleware(scope, receive, send))
    else:
        asyncio.run(middleware(scope, receive, send))
    expected = [] if status is None else [start, {"type": "http.response.body", "body": b"ok"}]
    assert sent == expected
    record = assert_one_sound_record(sink, middleware.recorder.failures)
    if isinstance(status, int) and 100 <= status <= 599:
        assert record.status_code == status


@st.composite
def wsgi_environs(draw: st.DrawFn) -> dict[str, Any]:
    latin1 = st.text(alphabet=st.characters(max_codepoint=255), max_size=120)
    environ: dict[str, Any] = {
        "REQUEST_METHOD": draw(st.one_of(st.sampled_from(sorted(STANDARD_METHODS)), TEXT)),
        "PATH_INFO": draw(st.one_of(latin1, TEXT)),
        "SCRIPT_NAME": draw(latin1),
        "QUERY_STRING": draw(latin1),
        "SERVER_PROTOCOL": "HTTP/1.1",
    }
    for name, value in draw(st.dictionaries(st.text(max_size=20), latin1, max_size=4)).items():
        environ[f"HTTP_{name.upper()}"] = value
    return environ


WSGI_STATUS = st.one_of(
    st.sampled_from(["200 OK", "404 Not Found", "503 Service Unavailable"]),
    st.text(max_size=12),
    st.none(),
)


@FUZZ
@given(
    environ=wsgi_environs(),
    status=WSGI_STATUS,
    fail=st.sampled_from(["no", "before", "in_body"]),
)
def test_wsgi_middleware_passes_everything_through_and_records_once(
    environ: dict[str, Any], status: str | None, fail: str
) -> None:
    count("wsgi requests")
    sink = AgentPathSink()
    started: list[str] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        started.append(status)
        return lambda data: None

    def body() -> Iterator[bytes]:
        yield b"part"
        if fail == "in_body":
            raise AppFailed("body failed")

    def app(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
        if fail == "before":
            raise AppFailed("app failed")
        if status is not None:
            start_response(status, [("Content-Type", "text/plain")])
        return body()

    middleware = DealerPulseWSGIMiddleware(app, sink=sink, clock=FakeClock())
    if fail == "before":
        with pytest.raises(AppFailed):
            middleware(environ, start_response)
    else:
        answer = middleware(environ, start_response)
        try:
            if fail == "in_body":
                with pytest.raises(AppFailed):
                    list(answer)
            else:
                assert list(answer) == [b"part"]
        finally:
            answer.close()  # type: ignore[attr-defined]  # the server's duty (PEP 3333)
    assert started == ([] if status is None or fail == "before" else [status])
    assert_one_sound_record(sink, middleware.recorder.failures)
