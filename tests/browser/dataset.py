"""A store filled with one dealer whose numbers are known, for the dashboard tests.

Sunrise Motors (``sunrise-motors``) at ``NOW``:

- the reporter's 5-minute real-time window holds 600 ``GET /api/inventory``
  requests of 120 ms and 200 ``POST /api/leads`` requests of 300 ms, 2 of
  them HTTP 500: average 165 ms, error rate 0.25 % (warning: > 0.1 %),
  160 requests per minute;
- the newest host figures: CPU 42.5 %, memory 61 %, disk 93 %;
- 24 hours of history before that window (traffic every 5 minutes, host
  samples every minute), so the 24h charts have points.

A second dealer (Zenith Auto) exists so an admin gets a dealer selector.
Endpoint statistics come from the agent's own aggregator, as in production,
and the rollups are computed by the collector's rollup job.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from dataclasses import dataclass
from datetime import UTC, datetime

from agent.aggregate import EndpointAggregator, RequestRecord
from collector.rollup.rollups import RollupRunner
from collector.store import SQLAlchemyMetricStore
from dealerpulse.clock import FakeClock, from_unix_ms, to_unix_ms
from dealerpulse.model import EndpointStat, MetricBatch, Sample, labels_of
from dealerpulse.tokens import hash_token, new_admin_token, new_token

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
DEALER, DEALER_NAME = "sunrise-motors", "Sunrise Motors"
OTHER, OTHER_NAME = "zenith-auto", "Zenith Auto"
AGENT = "sunrise-agent-1"

NOW_MS = to_unix_ms(NOW)
MINUTE_MS = 60_000
HISTORY_MINUTES = 24 * 60
# The real-time traffic: one agent interval that ended 10 s before NOW (an
# interval counts in a window by its end, and a window is [start, NOW)).
RECENT_START_MS = NOW_MS - MINUTE_MS - 10_000
RECENT_END_MS = NOW_MS - 10_000
INVENTORY_REQUESTS, INVENTORY_MS = 600, 120.0
LEADS_REQUESTS, LEADS_MS, LEADS_ERRORS = 200, 300.0, 2
LEADS_ERROR = "HTTP 500: database timeout"

# What the page must show for the real-time window (300 s).
EXPECTED_AVG_MS = 165.0
EXPECTED_ERROR_RATE_PERCENT = 0.25
EXPECTED_THROUGHPUT_PER_MIN = 160.0
CPU_NOW, MEMORY_NOW, DISK_NOW = 42.5, 61.0, 93.0


@dataclass(frozen=True, slots=True)
class Tokens:
    dealer: str
    other: str
    admin: str


def fill(store: SQLAlchemyMetricStore) -> Tokens:
    tokens = Tokens(new_token(DEALER), new_token(OTHER), new_admin_token())
    store.create_dealer(DEALER, DEALER_NAME, hash_token(tokens.dealer), NOW)
    store.create_dealer(OTHER, OTHER_NAME, hash_token(tokens.other), NOW)
    store.add_token(None, hash_token(tokens.admin), NOW, role="admin")
    batches = [*_history_batches(), _recent_batch(seq=10_000)]
    for start in range(0, len(batches), 50):
        store.write_batches(batches[start : start + 50], NOW)
    RollupRunner(store.engine).run(NOW)
    return tokens


def _batch(
    seq: int, samples: tuple[Sample, ...], endpoints: tuple[EndpointStat, ...]
) -> MetricBatch:
    built = MetricBatch(
        agent_id=AGENT,
        dealer_id=DEALER,
        seq=seq,
        boot_id="boot-a",
        hostname="dms-01",
        agent_version="0.1.0",
        created_ms=NOW_MS,
        samples=samples,
        endpoints=endpoints,
    )
    content = dataclasses.replace(built, digest=b"")
    return dataclasses.replace(built, digest=hashlib.sha256(repr(content).encode()).digest())


def _host_samples(time_ms: int, minute: int, latest: bool) -> tuple[Sample, ...]:
    """One minute's host figures; a daily wave, ending exactly at the *_NOW values."""
    wave = math.sin(2 * math.pi * minute / HISTORY_MINUTES)
    cpu = CPU_NOW if latest else 35.0 + 15.0 * wave
    memory = MEMORY_NOW if latest else 58.0 + 3.0 * wave
    return (
        Sample("cpu.percent", cpu, "percent", time_ms, labels_of()),
        Sample("memory.percent", memory, "percent", time_ms, labels_of()),
        Sample("disk.used_percent", DISK_NOW, "percent", time_ms, labels_of(mount="/")),
        Sample("net.recv_percent", 12.0, "percent", time_ms, labels_of(nic="eth0")),
    )


def _traffic(start_ms: int, end_ms: int, requests: list[RequestRecord]) -> tuple[EndpointStat, ...]:
    aggregator = EndpointAggregator(clock=FakeClock(from_unix_ms(start_ms)), source="middleware")
    for record in requests:
        aggregator.record(record)
    return tuple(aggregator.drain(end_ms))


def _history_batches() -> list[MetricBatch]:
    """Every 5 minutes from NOW - 24 h to NOW - 10 min: outside the real-time window."""
    batches = []
    first_ms = NOW_MS - HISTORY_MINUTES * MINUTE_MS
    for index, start_ms in enumerate(range(first_ms, NOW_MS - 10 * MINUTE_MS, 5 * MINUTE_MS)):
        minute = (start_ms - first_ms) // MINUTE_MS
        inventory_ms = 100.0 + 60.0 * math.sin(2 * math.pi * minute / 360)
        requests = [
            RequestRecord("/api/inventory", "GET", 200, inventory_ms, start_ms + i)
            for i in range(50)
        ] + [RequestRecord("/api/leads", "POST", 200, 250.0, start_ms + 100 + i) for i in range(10)]
        samples = tuple(
            sample
            for m in range(5)
            for sample in _host_samples(start_ms + m * MINUTE_MS + 30_000, minute + m, False)
        )
        endpoints = _traffic(start_ms, start_ms + 5 * MINUTE_MS, requests)
        batches.append(_batch(index + 1, samples, endpoints))
    return batches


def _recent_batch(seq: int) -> MetricBatch:
    """The last 10 minutes of host samples and the last minute's known traffic."""
    requests = [
        RequestRecord("/api/inventory", "GET", 200, INVENTORY_MS, RECENT_START_MS + i)
        for i in range(INVENTORY_REQUESTS)
    ]
    for i in range(LEADS_REQUESTS):
        failed = i < LEADS_ERRORS
        requests.append(
            RequestRecord(
                "/api/leads",
                "POST",
                500 if failed else 200,
                LEADS_MS,
                RECENT_START_MS + 1000 + i,
                LEADS_ERROR if failed else "",
            )
        )
    samples = tuple(
        sample
        for back in range(10, 0, -1)
        for sample in _host_samples(
            NOW_MS - back * MINUTE_MS + 30_000, HISTORY_MINUTES - back, latest=back == 1
        )
    )
    return _batch(seq, samples, _traffic(RECENT_START_MS, RECENT_END_MS, requests))
