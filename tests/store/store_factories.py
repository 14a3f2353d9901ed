"""Builders for the store tests: dealers, samples, batches with honest digests."""

from __future__ import annotations

import dataclasses
import hashlib
from datetime import UTC, datetime

from collector.abc import MetricStore
from dealerpulse.clock import to_unix_ms
from dealerpulse.model import (
    AgentCounters,
    EndpointStat,
    Gap,
    MetricBatch,
    Sample,
    labels_of,
)

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
T0 = to_unix_ms(NOW) - 60_000
DEALER = "acme-motors"


def add_dealer(store: MetricStore, dealer_id: str = DEALER) -> str:
    store.create_dealer(dealer_id, dealer_id.replace("-", " ").title(), f"hash-{dealer_id}", NOW)
    return dealer_id


def sample(
    name: str = "cpu.percent",
    value: float = 12.5,
    time_ms: int = T0,
    unit: str = "percent",
    **labels: str,
) -> Sample:
    return Sample(name=name, value=value, unit=unit, time_ms=time_ms, labels=labels_of(**labels))


def host_samples(time_ms: int, base: float = 0.0) -> tuple[Sample, ...]:
    """One interval of a small host: CPU, memory and two disks."""
    return (
        sample("cpu.percent", base + 10.0, time_ms),
        sample("memory.used_percent", base + 40.0, time_ms),
        sample("disk.used_percent", base + 70.0, time_ms, mount="/"),
        sample("disk.used_percent", base + 20.0, time_ms, mount="/data"),
    )


def batch(
    agent_id: str = "agent-1",
    seq: int = 1,
    *,
    dealer_id: str = DEALER,
    samples: tuple[Sample, ...] = (),
    endpoints: tuple[EndpointStat, ...] = (),
    gaps: tuple[Gap, ...] = (),
    counters: AgentCounters | None = None,
    hostname: str = "dms-01",
    boot_id: str = "boot-a",
) -> MetricBatch:
    built = MetricBatch(
        agent_id=agent_id,
        dealer_id=dealer_id,
        seq=seq,
        boot_id=boot_id,
        hostname=hostname,
        agent_version="0.1.0",
        created_ms=T0,
        samples=samples,
        endpoints=endpoints,
        gaps=gaps,
        counters=counters or AgentCounters(generated_samples=seq * 10),
    )
    return with_digest(built)


def with_digest(built: MetricBatch) -> MetricBatch:
    """The batch with the SHA-256 of its content, as the collector's codec computes one."""
    content = dataclasses.replace(built, digest=b"")
    return dataclasses.replace(built, digest=hashlib.sha256(repr(content).encode()).digest())
