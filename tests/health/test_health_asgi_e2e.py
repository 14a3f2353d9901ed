"""End to end: a Starlette app under uvicorn with the ASGI middleware -> the real agent
(intake, spool, shipper) -> the real collector -> SQLite -> health figures equal to what
the app did (counts exact, percentiles within the sketch's 1 %)."""

from __future__ import annotations

import asyncio
import http.client
import math
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from agent.instrument import DealerPulseASGIMiddleware, RecordSink
from agent.instrument.asgi import ASGIApp
from agent.instrument.wire import IntakeAddress
from agent.runner import build_agent
from agent.settings import AgentConfig
from collector.admin import add_dealer
from collector.health import DealerHealth, dealer_health
from collector.server import CollectorServer
from collector.store import open_store
from dealerpulse.clock import FakeClock

from .test_health_e2e import socket_path, wait_for

__all__ = ["socket_path"]  # a fixture, used by name

VEHICLES, LEADS = 1_500, 500


def vehicle_ms(n: int) -> float:
    return 0.5 + (n * 41 % 400) / 2  # 0.5 .. 200 ms


def lead_ms(n: int) -> float:
    return 150.0 + n * 13 % 850  # 150 .. 999 ms


def dealer_app(clock: FakeClock) -> Starlette:
    # Requests come one at a time, so each handler's clock step is its duration.
    async def vehicle(request: Request) -> Response:
        n = request.path_params["vehicle_id"]
        clock.advance(vehicle_ms(n) / 1000)
        return PlainTextResponse("car", status_code=404 if n % 20 == 0 else 200)

    async def lead(request: Request) -> Response:
        n = request.path_params["lead_id"]
        clock.advance(lead_ms(n) / 1000)
        if n % 40 == 9:
            raise ConnectionError(f"CRM down for lead {n}")
        return PlainTextResponse("lead", status_code=503 if n % 40 == 3 else 201)

    return Starlette(
        routes=[
            Route("/api/vehicles/{vehicle_id:int}", vehicle),
            Route("/api/leads/{lead_id:int}", lead, methods=["POST"]),
        ]
    )


@contextmanager
def serve_asgi(app: ASGIApp) -> Iterator[tuple[int, uvicorn.Server]]:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    config = uvicorn.Config(app, log_level="critical", access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1], server
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        listener.close()


def request(port: int, method: str, path: str) -> int:
    # A connection per request: uvicorn closes one after an unhandled exception.
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request(method, path, body=b"{}" if method == "POST" else None)
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def drive(port: int) -> None:
    """Every request, one at a time and in order."""
    for n in range(VEHICLES):
        request(port, "GET", f"/api/vehicles/{n}")
    for n in range(LEADS):
        request(port, "POST", f"/api/leads/{n}")


def test_starlette_requests_through_agent_and_collector_give_exact_health(
    sqlite_url: str, socket_path: Path, tmp_path: Path
) -> None:
    store = open_store(sqlite_url, pool_size=5)
    dealer, token = add_dealer(store, "Harbor Motors")
    began = datetime.now(UTC)

    async def scenario() -> None:
        server = CollectorServer(store, "127.0.0.1:0")
        port = await server.start()
        config = AgentConfig(
            collector=f"127.0.0.1:{port}",
            token=token,
            interval_s=0.25,
            spool_path=tmp_path / "spool.db",
            intake=IntakeAddress(path=str(socket_path)),
        )
        agent = build_agent(config)
        running = asyncio.create_task(agent.run())
        try:
            await wait_for(socket_path.exists, "the intake socket")
            clock = FakeClock(datetime.now(UTC))
            sink = RecordSink(socket_path, max_queue=10_000)
            app = DealerPulseASGIMiddleware(dealer_app(clock), sink=sink, clock=clock)
            with serve_asgi(app) as (web_port, web):
                await wait_for(lambda: web.started, "uvicorn to start")
                await asyncio.to_thread(drive, web_port)
            assert await asyncio.to_thread(sink.flush, 10)
            sent = sink.stats()
            assert (sent.dropped_queue_full, sent.send_failed) == (0, 0)
            sink.close()

            def stored() -> int:
                end = datetime.now(UTC) + timedelta(hours=1)
                records = store.query_endpoint_stats(dealer.dealer_id, began, end)
                return sum(r.stat.count for r in records)

            await wait_for(lambda: stored() == VEHICLES + LEADS, "every request stored")
        finally:
            agent.stop()
            await asyncio.wait_for(running, 20)
            await server.stop(5)

    asyncio.run(asyncio.wait_for(scenario(), 90))
    try:
        end = datetime.now(UTC) + timedelta(seconds=1)
        health = dealer_health(store, dealer.dealer_id, began - timedelta(seconds=1), end)
    finally:
        store.close()
    check_health(health)


def check_health(health: DealerHealth) -> None:
    vehicles = [vehicle_ms(n) for n in range(VEHICLES)]
    leads = [lead_ms(n) for n in range(LEADS)]
    crashed = [n for n in range(LEADS) if n % 40 == 9]
    unavailable = [n for n in range(LEADS) if n % 40 == 3]
    everything = sorted(vehicles + leads)
    assert health.requests == VEHICLES + LEADS
    assert health.errors == len(crashed) + len(unavailable)
    assert health.avg_ms == pytest.approx(math.fsum(everything) / len(everything))
    for q, got in ((0.5, health.p50_ms), (0.95, health.p95_ms), (0.99, health.p99_ms)):
        truth = everything[math.floor(q * (len(everything) - 1))]
        assert got == pytest.approx(truth, rel=0.01, abs=1e-6)
    by_route = {(e.route, e.method): e for e in health.endpoints}
    vehicle = by_route["/api/vehicles/{vehicle_id}", "GET"]
    lead = by_route["/api/leads/{lead_id}", "POST"]
    assert (vehicle.requests, vehicle.errors) == (VEHICLES, 0)
    assert vehicle.client_errors == VEHICLES // 20
    assert (lead.requests, lead.errors) == (LEADS, len(crashed) + len(unavailable))
    assert max(crashed) > max(unavailable)  # so the last error is an exception
    assert lead.last_error == f"ConnectionError: CRM down for lead {crashed[-1]}"
