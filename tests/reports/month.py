"""A known synthetic month of two dealers, written through the store's real batch writer.

Dealer ``acme-motors`` (agent ``acme-1``), 30 days from :data:`START`: host
samples (CPU, memory, disk) every 10 minutes, and per hour one statistic of
``GET /api/inventory`` (36 calls) and one of ``POST /api/leads`` (18 calls,
one server error every other hour), each with its latency sketch. Planted:

- a response-time step up of ``GET /api/inventory`` at :data:`STEP_AT`
  (day 20), still there at the end: a regression recommendation;
- memory in use growing linearly from 40 % to 80 %: a memory-leak
  recommendation (100 % reached about 15 days after the range);
- a 6-hour outage (no samples, no traffic) on day 10: uptime below 100 %.

Nothing else may be recommended: the inventory p95 stays below the 200 ms
threshold, CPU below 80 %, the traffic is even over the day.

Dealer ``zenith-cars`` (agent ``zenith-1``), over the same month: host
samples every hour, traffic every 6 hours; figures that would stand out in
acme's report if they leaked into it.

:class:`Month` keeps every latency it wrote, so tests compare the report
with the inserted data, not with another query.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from collector.store import SQLAlchemyMetricStore
from dealerpulse.clock import to_unix_ms
from dealerpulse.model import EndpointStat, MetricBatch, Sample, WriteOutcome, labels_of
from dealerpulse.sketch import DDSketch

START = datetime(2026, 3, 1, tzinfo=UTC)
DAYS = 30
END = START + timedelta(days=DAYS)
HOUR, SLOT = timedelta(hours=1), timedelta(minutes=10)
HOURS, SLOTS = DAYS * 24, DAYS * 24 * 6
STEP_DAY = 20
STEP_AT = START + timedelta(days=STEP_DAY)
OUTAGE_HOURS = range(9 * 24 + 10, 9 * 24 + 16)  # day 10, 10:00-16:00 UTC
ACME, ZENITH = "acme-motors", "zenith-cars"
INVENTORY, LEADS, OTHER = "/api/inventory", "/api/leads", "/api/zenith-only"
BATCHES_PER_WRITE = 48


@dataclass
class Traffic:
    """What one endpoint was sent: every latency, errors, the newest error."""

    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    last_error: str = ""


@dataclass
class Month:
    """What was inserted for acme-motors."""

    traffic: dict[str, Traffic] = field(default_factory=dict)
    cpu: list[float] = field(default_factory=list)
    memory: list[float] = field(default_factory=list)
    disk: list[float] = field(default_factory=list)

    def latencies(self) -> list[float]:
        return [v for t in self.traffic.values() for v in t.latencies]


def _wobble(slot: int) -> float:
    """A repeatable 0-10 ms variation, so that hourly means are not all equal."""
    return float(slot * 37 % 11)


def inventory_latencies(slot: int) -> list[float]:
    base = 150.0 if slot >= STEP_DAY * 144 else 60.0
    return [base + 5.0 * j + _wobble(slot) for j in range(6)]


def leads_latencies(slot: int) -> list[float]:
    return [80.0 + 10.0 * j + _wobble(slot + 3) for j in range(3)]


def _stat(route: str, method: str, at_ms: int, values: list[float], errors: int) -> EndpointStat:
    return EndpointStat(
        route=route,
        method=method,
        start_ms=at_ms,
        end_ms=at_ms + 10_000,
        count=len(values),
        errors=errors,
        duration_sum_ms=sum(values),
        duration_min_ms=min(values),
        duration_max_ms=max(values),
        last_error=f"HTTP 503 at slot {at_ms}" if errors else "",
        last_error_ms=at_ms + 5_000 if errors else 0,
        latency=DDSketch.of(values).to_model(),
    )


def _sample(name: str, value: float, at_ms: int, **labels: str) -> Sample:
    return Sample(name=name, value=value, unit="percent", time_ms=at_ms, labels=labels_of(**labels))


def _acme_hour(hour: int, month: Month) -> tuple[list[Sample], list[EndpointStat]]:
    """Host samples of the hour's six slots; one statistic per endpoint for the hour."""
    slots = range(hour * 6, hour * 6 + 6)
    at_ms = to_unix_ms(START + hour * HOUR)
    inventory = [v for slot in slots for v in inventory_latencies(slot)]
    leads = [v for slot in slots for v in leads_latencies(slot)]
    lead_errors = 1 if hour % 2 == 0 else 0
    stats = [
        _stat(INVENTORY, "GET", at_ms, inventory, 0),
        _stat(LEADS, "POST", at_ms, leads, lead_errors),
    ]
    month.traffic[INVENTORY].latencies += inventory
    month.traffic[LEADS].latencies += leads
    month.traffic[LEADS].errors += lead_errors
    if lead_errors:
        month.traffic[LEADS].last_error = stats[1].last_error
    samples = []
    for slot in slots:
        slot_ms = to_unix_ms(START + slot * SLOT)
        cpu, memory, disk = 30.0 + 2.0 * (slot % 6), 40.0 + 40.0 * slot / SLOTS, 55.0
        month.cpu.append(cpu)
        month.memory.append(memory)
        month.disk.append(disk)
        samples += [
            _sample("cpu.percent", cpu, slot_ms),
            _sample("memory.percent", memory, slot_ms),
            _sample("disk.used_percent", disk, slot_ms, mount="/"),
        ]
    return samples, stats


def _zenith_hour(hour: int) -> tuple[list[Sample], list[EndpointStat]]:
    at_ms = to_unix_ms(START + hour * HOUR)
    stats = [_stat(OTHER, "GET", at_ms, [900.0, 1900.0], 1)] if hour % 6 == 0 else []
    return [_sample("cpu.percent", 97.0, at_ms), _sample("memory.percent", 95.0, at_ms)], stats


def _batch(
    dealer_id: str, agent_id: str, seq: int, parts: tuple[list[Sample], list[EndpointStat]]
) -> MetricBatch:
    samples, stats = parts
    built = MetricBatch(
        agent_id=agent_id,
        dealer_id=dealer_id,
        seq=seq,
        boot_id="boot-1",
        hostname=f"host-{agent_id}",
        agent_version="test",
        created_ms=samples[-1].time_ms,
        samples=tuple(samples),
        endpoints=tuple(stats),
    )
    content = dataclasses.replace(built, digest=b"")
    return dataclasses.replace(built, digest=hashlib.sha256(repr(content).encode()).digest())


def _batches(month: Month) -> Iterator[MetricBatch]:
    """One batch per agent per hour; acme sends none during the outage."""
    acme_seq = 0
    for hour in range(HOURS):
        if hour not in OUTAGE_HOURS:
            acme_seq += 1
            yield _batch(ACME, "acme-1", acme_seq, _acme_hour(hour, month))
        yield _batch(ZENITH, "zenith-1", hour + 1, _zenith_hour(hour))


def fill(store: SQLAlchemyMetricStore) -> Month:
    """Create both dealers and write the month, ``BATCHES_PER_WRITE`` batches a commit."""
    for dealer_id in (ACME, ZENITH):
        store.create_dealer(dealer_id, dealer_id.title(), f"hash-{dealer_id}", START)
    month = Month(traffic={INVENTORY: Traffic(), LEADS: Traffic()})
    pending: list[MetricBatch] = []
    for batch in _batches(month):
        pending.append(batch)
        if len(pending) == BATCHES_PER_WRITE:
            _write(store, pending)
            pending = []
    _write(store, pending)
    return month


def _write(store: SQLAlchemyMetricStore, batches: list[MetricBatch]) -> None:
    if not batches:
        return
    results = store.write_batches(batches, END)
    refused = [r for r in results if r.outcome is not WriteOutcome.STORED]
    assert not refused, f"the store did not store synthetic batches: {refused[:3]}"
