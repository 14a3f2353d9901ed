"""Fixtures of the API-performance tests: a real intake feeding a real aggregator."""

from __future__ import annotations

import http.client
import math
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from agent.aggregate import EndpointAggregator
from agent.instrument.sink import RecordSink
from agent.intake import IntakeServer
from dealerpulse.clock import FakeClock
from dealerpulse.model import EndpointStat
from dealerpulse.sketch import DDSketch


def wait_until(condition: Callable[[], bool], timeout_s: float = 10.0, what: str = "") -> None:
    """Poll a condition until it holds; fail the test after timeout_s."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s}s waiting for {what or condition}")
        time.sleep(0.005)


@pytest.fixture
def socket_dir() -> Iterator[Path]:
    # Unix socket paths must stay under ~100 bytes; pytest's tmp_path can be longer.
    directory = Path(tempfile.mkdtemp(prefix="dp-", dir="/tmp"))
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@dataclass
class Intake:
    aggregator: EndpointAggregator
    server: IntakeServer
    path: Path
    clock: FakeClock

    def sink(self, **options: float) -> RecordSink:
        return RecordSink(self.path, **options)  # type: ignore[arg-type]

    def wait_for_records(self, count: int) -> None:
        wait_until(lambda: self.aggregator.records >= count, what=f"{count} records at intake")


@pytest.fixture
def intake(socket_dir: Path) -> Iterator[Intake]:
    clock = FakeClock()
    aggregator = EndpointAggregator(clock=clock)
    path = socket_dir / "intake.sock"
    server = IntakeServer(aggregator, path)
    server.start()
    yield Intake(aggregator, server, path, clock)
    server.stop()


def http_get(port: int, path: str, method: str = "GET") -> tuple[int, bytes]:
    """One request on its own connection (a server may close one after an error)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request(method, path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def lower_quantile(values: list[float], q: float) -> float:
    """What the sketch estimates: the element at rank floor(q * (n - 1))."""
    ordered = sorted(values)
    return ordered[math.floor(q * (len(ordered) - 1))]


def assert_latency_matches(stat: EndpointStat, latencies: list[float]) -> None:
    """Count, sum, min, max exact; p50/p95/p99 within the sketch's 1 % bound."""
    assert stat.count == len(latencies)
    assert stat.duration_sum_ms == pytest.approx(math.fsum(latencies), rel=1e-9)
    assert stat.duration_min_ms == pytest.approx(min(latencies), abs=1e-6)
    assert stat.duration_max_ms == pytest.approx(max(latencies), abs=1e-6)
    assert stat.latency is not None
    sketch = DDSketch.from_model(
        stat.latency,
        sum_ms=stat.duration_sum_ms,
        min_ms=stat.duration_min_ms,
        max_ms=stat.duration_max_ms,
    )
    for q in (0.5, 0.95, 0.99):
        truth = lower_quantile(latencies, q)
        # 1e-6 ms: the float noise of FakeClock's seconds, far below the 1 % bound.
        assert sketch.quantile(q) == pytest.approx(
            truth, rel=stat.latency.relative_accuracy, abs=1e-6
        )
