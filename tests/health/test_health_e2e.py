"""End to end: a WSGI app with the middleware -> the real agent (intake, spool, shipper)
-> the real collector -> SQLite -> health figures equal to what the app did."""

from __future__ import annotations

import asyncio
import math
import shutil
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

import pytest

from agent.instrument import DealerPulseWSGIMiddleware, RecordSink
from agent.instrument.wire import IntakeAddress
from agent.runner import build_agent
from agent.settings import AgentConfig
from collector.admin import add_dealer, dealer_healths
from collector.health import dealer_health
from collector.server import CollectorServer
from collector.store import open_store
from dealerpulse.clock import FakeClock

REQUESTS = 2_000


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def serve(app: Any) -> Iterator[int]:
    server = make_server("127.0.0.1", 0, app, handler_class=QuietHandler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server.server_port
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def latency_ms(n: int) -> float:
    return float(1 + n * 53 % 700)


def app_of(clock: FakeClock) -> Any:
    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        n = int(environ["PATH_INFO"].rsplit("/", 1)[1])
        clock.advance(latency_ms(n) / 1000)  # the request "takes" its latency
        if n % 50 == 7:
            raise RuntimeError(f"order {n} failed")
        start_response("200 OK" if n % 25 else "404 Not Found", [("Content-Length", "2")])
        return [b"ok"]

    return app


def get(port: int, path: str) -> int:
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


@pytest.fixture
def socket_path() -> Iterator[Path]:
    directory = Path(tempfile.mkdtemp(prefix="dp-", dir="/tmp"))  # short: a unix socket path
    yield directory / "intake.sock"
    shutil.rmtree(directory, ignore_errors=True)


async def wait_for(condition: Any, what: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not await asyncio.to_thread(condition):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def test_requests_through_agent_and_collector_give_exact_health(
    sqlite_url: str, socket_path: Path, tmp_path: Path
) -> None:
    store = open_store(sqlite_url, pool_size=5)
    dealer, token = add_dealer(store, "Sunrise Motors")
    began = datetime.now(UTC)

    async def scenario() -> None:
        server = CollectorServer(store, "127.0.0.1:0")
        port = await server.start()
        config = AgentConfig(
            collector=f"127.0.0.1:{port}",
            token=token,
            interval_s=0.2,
            spool_path=tmp_path / "spool.db",
            hostname="dms-1",
            intake=IntakeAddress(path=str(socket_path)),
        )
        agent = build_agent(config)
        running = asyncio.create_task(agent.run())
        try:
            await wait_for(socket_path.exists, "the intake socket")
            # The app's clock advances by each request's latency; start it that far back
            # so that record times end near now (the collector refuses times far ahead).
            total_s = math.fsum(latency_ms(n) for n in range(REQUESTS)) / 1000
            clock = FakeClock(datetime.now(UTC) - timedelta(seconds=total_s))
            sink = RecordSink(socket_path)
            app = DealerPulseWSGIMiddleware(app_of(clock), sink=sink, clock=clock)
            with serve(app) as web_port:
                for n in range(REQUESTS):
                    await asyncio.to_thread(get, web_port, f"/orders/{n}")
            assert await asyncio.to_thread(sink.flush, 10)
            sink.close()

            def stored() -> int:
                end = datetime.now(UTC) + timedelta(hours=1)
                records = store.query_endpoint_stats(dealer.dealer_id, began, end)
                return sum(r.stat.count for r in records)

            def liveness() -> int:
                end = datetime.now(UTC) + timedelta(hours=1)
                return len(store.query_samples(dealer.dealer_id, "cpu.percent", began, end))

            await wait_for(lambda: stored() == REQUESTS, f"{REQUESTS} requests stored")
            await wait_for(lambda: liveness() >= 2, "two host samples")
        finally:
            agent.stop()
            await asyncio.wait_for(running, 20)
            await server.stop(5)
        assert not socket_path.exists()  # the intake removed its socket on shutdown

    asyncio.run(asyncio.wait_for(scenario(), 90))
    try:
        end = datetime.now(UTC) + timedelta(seconds=1)
        health = dealer_health(store, dealer.dealer_id, began - timedelta(seconds=1), end)
        [recent] = dealer_healths(store, dealer.dealer_id, 3600)
    finally:
        store.close()

    latencies = [latency_ms(n) for n in range(REQUESTS)]
    errors = sum(1 for n in range(REQUESTS) if n % 50 == 7)
    assert health.requests == recent.requests == REQUESTS
    assert health.errors == errors
    assert health.error_rate_percent == pytest.approx(100 * errors / REQUESTS)
    assert health.avg_ms == pytest.approx(math.fsum(latencies) / REQUESTS)
    ordered = sorted(latencies)
    for q, got in ((0.5, health.p50_ms), (0.95, health.p95_ms), (0.99, health.p99_ms)):
        truth = ordered[math.floor(q * (REQUESTS - 1))]
        assert got == pytest.approx(truth, rel=0.01, abs=1e-6)
    [orders] = health.endpoints
    assert (orders.route, orders.method, orders.source) == ("/orders/{id}", "GET", "middleware")
    assert orders.errors == errors
    assert orders.client_errors == sum(1 for n in range(REQUESTS) if n % 25 == 0 and n % 50 != 7)
    last = max(n for n in range(REQUESTS) if n % 50 == 7)
    assert orders.last_error == f"RuntimeError: order {last} failed"
    assert health.uptime_source == "agent"  # no probe: the agent's own samples
    assert health.status.value == "critical"  # ~350 ms average and 2 % errors
