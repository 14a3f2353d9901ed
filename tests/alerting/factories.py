"""Builders for the alerting tests: a dealer, samples and batches with honest digests."""

from __future__ import annotations

import dataclasses
import hashlib
from datetime import UTC, datetime

from collector.abc import MetricStore
from dealerpulse.clock import to_unix_ms
from dealerpulse.model import EndpointStat, MetricBatch, Sample, labels_of

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
DEALER = "acme-motors"


def add_dealer(store: MetricStore, dealer_id: str = DEALER) -> str:
    store.create_dealer(dealer_id, dealer_id.replace("-", " ").title(), f"hash-{dealer_id}", NOW)
    return dealer_id


def sample(name: str, value: float, time_ms: int, **labels: str) -> Sample:
    return Sample(
        name=name, value=value, unit="percent", time_ms=time_ms, labels=labels_of(**labels)
    )


def batch(
    agent_id: str = "agent-1",
    seq: int = 1,
    *,
    dealer_id: str = DEALER,
    samples: tuple[Sample, ...] = (),
    endpoints: tuple[EndpointStat, ...] = (),
) -> MetricBatch:
    built = MetricBatch(
        agent_id=agent_id,
        dealer_id=dealer_id,
        seq=seq,
        boot_id="boot-a",
        hostname="dms-01",
        agent_version="0.1.0",
        created_ms=to_unix_ms(NOW),
        samples=samples,
        endpoints=endpoints,
    )
    content = dataclasses.replace(built, digest=b"")
    return dataclasses.replace(built, digest=hashlib.sha256(repr(content).encode()).digest())
