"""Per-request overhead of the DealerPulse WSGI and ASGI middlewares.

Calls a minimal app directly (no HTTP server, so only our cost shows), once
bare and once wrapped, alternating blocks so drift hits both alike, and
reports p50/p99 of each and the difference, in microseconds. The records go
to a real intake running in a separate process, as the agent would, unless
``--no-agent`` (then every send fails: the cost of an absent agent).

    python -m bench.middleware [--requests 50000] [--no-agent] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

from agent.aggregate import EndpointAggregator
from agent.instrument import DealerPulseASGIMiddleware, DealerPulseWSGIMiddleware, RecordSink
from agent.instrument.asgi import ASGIApp, Message, Receive, Scope, Send
from agent.instrument.wsgi import StartResponse, WSGIApp
from agent.intake import IntakeServer

BLOCK = 1_000


@dataclass
class Result:
    scenario: str
    requests: int
    bare_p50_us: float
    bare_p99_us: float
    wrapped_p50_us: float
    wrapped_p99_us: float
    overhead_p50_us: float
    overhead_p99_us: float
    records_offered: int
    records_dropped: int
    records_sent: int
    records_send_failed: int


# ---- the agent side, in its own process


def run_intake(path: str, ready: Event, stop: Event, received: Any) -> None:
    aggregator = EndpointAggregator()
    with IntakeServer(aggregator, path):
        ready.set()
        stop.wait(600)
    received.value = aggregator.records


# ---- WSGI


def wsgi_hello(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


def time_wsgi(app: WSGIApp, paths: list[str]) -> list[float]:
    def start_response(status: str, headers: list[tuple[str, str]], exc: Any = None) -> Any:
        return None

    timings = []
    for path in paths:
        environ = {"REQUEST_METHOD": "GET", "PATH_INFO": path, "SCRIPT_NAME": ""}
        started = time.perf_counter_ns()
        body = app(environ, start_response)
        for _ in body:
            pass
        close = getattr(body, "close", None)
        if close is not None:
            close()
        timings.append((time.perf_counter_ns() - started) / 1000)
    return timings


# ---- ASGI


async def asgi_hello(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def starlette_app() -> ASGIApp | None:
    try:
        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.responses import PlainTextResponse
        from starlette.routing import Route
    except ImportError:
        return None

    async def vehicle(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    return Starlette(routes=[Route("/api/vehicles/{vehicle_id:int}", vehicle)])


def time_asgi(app: ASGIApp, paths: list[str]) -> list[float]:
    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        pass

    async def loop() -> list[float]:
        timings = []
        for path in paths:
            scope: Scope = {
                "type": "http",
                "method": "GET",
                "path": path,
                "raw_path": path.encode(),
                "root_path": "",
                "query_string": b"",
                "headers": [],
                "scheme": "http",
                "server": ("127.0.0.1", 80),
                "asgi": {"version": "3.0"},
                "http_version": "1.1",
            }
            started = time.perf_counter_ns()
            await app(scope, receive, send)
            timings.append((time.perf_counter_ns() - started) / 1000)
        return timings

    return asyncio.run(loop())


# ---- measuring


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=1000, method="inclusive")[round(q * 1000) - 1]


def measure(
    name: str,
    timer: Callable[[Any, list[str]], list[float]],
    bare: Any,
    wrapped: Any,
    sink: RecordSink,
    requests: int,
) -> Result:
    # Distinct ids: every path misses the template cache, the worst case.
    paths = [f"/api/vehicles/{n}" for n in range(requests)]
    timer(bare, paths[:BLOCK])  # warm-up
    timer(wrapped, paths[:BLOCK])
    bare_times: list[float] = []
    wrapped_times: list[float] = []
    for start in range(0, requests, BLOCK):
        block = paths[start : start + BLOCK]
        bare_times += timer(bare, block)
        wrapped_times += timer(wrapped, block)
    sink.flush(timeout_s=30)
    stats = sink.stats()
    result = Result(
        scenario=name,
        requests=requests,
        bare_p50_us=percentile(bare_times, 0.5),
        bare_p99_us=percentile(bare_times, 0.99),
        wrapped_p50_us=percentile(wrapped_times, 0.5),
        wrapped_p99_us=percentile(wrapped_times, 0.99),
        overhead_p50_us=0.0,
        overhead_p99_us=0.0,
        records_offered=stats.accepted + stats.dropped_queue_full,
        records_dropped=stats.dropped_queue_full,
        records_sent=stats.sent,
        records_send_failed=stats.send_failed,
    )
    result.overhead_p50_us = result.wrapped_p50_us - result.bare_p50_us
    result.overhead_p99_us = result.wrapped_p99_us - result.bare_p99_us
    return result


def scenarios(address: str, requests: int) -> list[Result]:
    results = []
    sink = RecordSink(address)
    results.append(
        measure(
            "wsgi plain app",
            time_wsgi,
            wsgi_hello,
            DealerPulseWSGIMiddleware(wsgi_hello, sink=sink),
            sink,
            requests,
        )
    )
    sink.close()
    sink = RecordSink(address)
    results.append(
        measure(
            "asgi plain app",
            time_asgi,
            asgi_hello,
            DealerPulseASGIMiddleware(asgi_hello, sink=sink),
            sink,
            requests,
        )
    )
    sink.close()
    app = starlette_app()
    if app is not None:
        sink = RecordSink(address)
        results.append(
            measure(
                "asgi starlette app",
                time_asgi,
                app,
                DealerPulseASGIMiddleware(app, sink=sink),
                sink,
                requests,
            )
        )
        sink.close()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=50_000)
    parser.add_argument("--no-agent", action="store_true", help="measure with no intake running")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="dp-bench-", dir="/tmp") as directory:
        path = str(Path(directory) / "intake.sock")
        context = multiprocessing.get_context("spawn")
        ready, stop = context.Event(), context.Event()
        received = context.Value("q", 0)
        agent = context.Process(target=run_intake, args=(path, ready, stop, received))
        if not args.no_agent:
            agent.start()
            if not ready.wait(30):
                print("the intake process did not start", file=sys.stderr)
                return 1
        results = scenarios(path, args.requests)
        if not args.no_agent:
            stop.set()
            agent.join(30)

    header = f"{'scenario':<20} {'bare p50/p99 µs':>17} {'wrapped p50/p99 µs':>20} "
    print(header + f"{'overhead p50/p99 µs':>21} {'sent':>7} {'failed':>7} {'dropped':>7}")
    for r in results:
        print(
            f"{r.scenario:<20} {r.bare_p50_us:>8.1f}/{r.bare_p99_us:<8.1f} "
            f"{r.wrapped_p50_us:>10.1f}/{r.wrapped_p99_us:<9.1f} "
            f"{r.overhead_p50_us:>10.1f}/{r.overhead_p99_us:<10.1f} "
            f"{r.records_sent:>7} {r.records_send_failed:>7} {r.records_dropped:>7}"
        )
    if not args.no_agent:
        print(f"records received by the intake process: {received.value}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
