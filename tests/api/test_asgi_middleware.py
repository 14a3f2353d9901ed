"""The ASGI middleware on a real server (uvicorn): a Starlette app and a bare ASGI app."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Mount, Route

from agent.aggregate import UNMATCHED_ROUTE
from agent.instrument import DealerPulseASGIMiddleware
from agent.instrument.asgi import ASGIApp, Receive, Scope, Send
from dealerpulse.clock import FakeClock

from .conftest import Intake, assert_latency_matches, http_get, wait_until

REQUESTS = 2_000


@contextmanager
def serve_asgi(app: ASGIApp) -> Iterator[int]:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    config = uvicorn.Config(app, log_level="critical", access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started, what="uvicorn to start")
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        listener.close()


def vehicle_latency_ms(n: int) -> float:
    return 0.5 + (n * 41 % 300) / 4  # 0.5 .. 75.25 ms


def lead_latency_ms(n: int) -> float:
    return 100.0 + n * 7 % 900  # 100 .. 999 ms


def dealer_app(clock: FakeClock) -> Starlette:
    """Latency and outcome follow from the path. Handlers move the fake clock:
    requests come one at a time, so each one's duration is exactly its latency."""

    async def vehicle(request: Request) -> Response:
        n = request.path_params["vehicle_id"]
        clock.advance(vehicle_latency_ms(n) / 1000)
        return PlainTextResponse("vehicle", status_code=404 if n % 10 == 0 else 200)

    async def lead(request: Request) -> Response:
        n = int(request.path_params["lead_id"])
        clock.advance(lead_latency_ms(n) / 1000)
        if n % 25 == 2:
            raise ConnectionError(f"CRM down for lead {n}")
        return PlainTextResponse("lead", status_code=502 if n % 25 == 6 else 200)

    return Starlette(
        routes=[
            Route("/api/vehicles/{vehicle_id:int}", vehicle),
            Mount("/crm/{dealer}", routes=[Route("/leads/{lead_id}", lead)]),
        ]
    )


def test_two_thousand_requests_aggregate_to_the_truth(intake: Intake) -> None:
    clock = FakeClock()
    sink = intake.sink()
    app = DealerPulseASGIMiddleware(dealer_app(clock), sink=sink, clock=clock)
    vehicles: list[float] = []
    leads: list[float] = []
    with serve_asgi(app) as port:
        for i in range(REQUESTS):
            if i % 2:
                status, _ = http_get(port, f"/api/vehicles/{i}")
                assert status == (404 if i % 10 == 0 else 200)
                vehicles.append(vehicle_latency_ms(i))
            else:
                status, _ = http_get(port, f"/crm/{i % 7}/leads/{i}")
                assert status == {2: 500, 6: 502}.get(i % 25, 200)
                leads.append(lead_latency_ms(i))
        for n in range(5):
            assert http_get(port, f"/nothing/here/{n}")[0] == 404
    assert sink.flush(timeout_s=10)
    intake.wait_for_records(REQUESTS + 5)

    stats = {s.route: s for s in intake.aggregator.drain(10**13)}
    assert set(stats) == {
        "/api/vehicles/{vehicle_id}",
        "/crm/{id}/leads/{lead_id}",  # the mount's own parameter is masked
        UNMATCHED_ROUTE,
    }
    vehicle_stat = stats["/api/vehicles/{vehicle_id}"]
    lead_stat = stats["/crm/{id}/leads/{lead_id}"]
    assert_latency_matches(vehicle_stat, vehicles)
    assert_latency_matches(lead_stat, leads)
    assert (vehicle_stat.client_errors, vehicle_stat.errors) == (0, 0)  # odd i: never % 10 == 0
    raised = sum(1 for i in range(0, REQUESTS, 2) if i % 25 == 2)
    bad_gateway = sum(1 for i in range(0, REQUESTS, 2) if i % 25 == 6)
    assert lead_stat.errors == raised + bad_gateway
    assert dict(lead_stat.status_counts)[500] == raised
    assert stats[UNMATCHED_ROUTE].client_errors == 5
    assert app.recorder.failures == 0
    sink.close()


async def bare_app(scope: Scope, receive: Receive, send: Send) -> None:
    """An ASGI app without a framework: no route in the scope."""
    if scope["path"].startswith("/boom"):
        raise RuntimeError("before any answer")
    await send({"type": "http.response.start", "status": 201, "headers": []})
    await send({"type": "http.response.body", "body": b"made"})


def test_a_bare_app_gets_default_templates_and_exceptions_count_as_500(intake: Intake) -> None:
    sink = intake.sink()
    with serve_asgi(DealerPulseASGIMiddleware(bare_app, sink=sink)) as port:
        for n in range(3):
            assert http_get(port, f"/api/vehicles/{n}/photos", method="POST")[0] == 201
        assert http_get(port, "/boom/7")[0] == 500
    assert sink.flush()
    intake.wait_for_records(4)

    created, boom = intake.aggregator.drain(10**13)
    assert (created.route, created.method, created.count) == (
        "/api/vehicles/{id}/photos",
        "POST",
        3,
    )
    assert (boom.route, boom.errors, boom.status_counts) == ("/boom/{id}", 1, ((500, 1),))
    assert boom.last_error == "RuntimeError: before any answer"


def test_a_route_resolver_names_what_the_framework_does_not(intake: Intake) -> None:
    sink = intake.sink()

    def resolver(scope: Scope) -> str | None:
        return "/api/vehicles/:id/photos" if "/photos" in scope["path"] else None

    app = DealerPulseASGIMiddleware(bare_app, sink=sink, route_resolver=resolver)
    with serve_asgi(app) as port:
        http_get(port, "/api/vehicles/9/photos")
        http_get(port, "/api/leads/9")
    assert sink.flush()
    intake.wait_for_records(2)
    assert [s.route for s in intake.aggregator.drain(10**13)] == [
        "/api/leads/{id}",
        "/api/vehicles/:id/photos",
    ]


def test_a_full_queue_drops_and_counts_while_every_request_succeeds(intake: Intake) -> None:
    sink = intake.sink(max_queue=5, flush_interval_s=60.0)  # a sender that never drains
    with serve_asgi(DealerPulseASGIMiddleware(bare_app, sink=sink)) as port:
        for n in range(50):
            assert http_get(port, f"/api/x/{n}") == (201, b"made")
    stats = sink.stats()
    assert (stats.accepted, stats.dropped_queue_full) == (5, 45)
    sink.close(timeout_s=10)
    intake.wait_for_records(5)


@pytest.mark.parametrize("scope_type", ["websocket", "lifespan"])
def test_non_http_scopes_pass_through_unrecorded(intake: Intake, scope_type: str) -> None:
    seen: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope["type"])

    async def receive() -> dict[str, object]:
        return {}

    async def send(message: object) -> None:
        pass

    import asyncio

    sink = intake.sink()
    asyncio.run(DealerPulseASGIMiddleware(app, sink=sink)({"type": scope_type}, receive, send))
    assert seen == [scope_type]
    assert sink.stats().accepted == 0
