"""Builders of the reporter tests: dealers with tokens, batches of samples and endpoint stats."""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from collector.store import SQLAlchemyMetricStore
from dealerpulse.clock import to_unix_ms
from dealerpulse.model import EndpointStat, MetricBatch, Sample, labels_of
from dealerpulse.tokens import hash_token, new_admin_token, new_token

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
ACME, ZENITH = "acme-motors", "zenith-cars"


@dataclass(frozen=True)
class Tokens:
    acme: str
    zenith: str
    admin: str


def add_dealers(store: SQLAlchemyMetricStore) -> Tokens:
    acme, zenith, admin = new_token(ACME), new_token(ZENITH), new_admin_token()
    store.create_dealer(ACME, "Acme Motors", hash_token(acme), NOW - timedelta(days=1))
    store.create_dealer(ZENITH, "Zenith Cars", hash_token(zenith), NOW - timedelta(days=1))
    store.add_token(None, hash_token(admin), NOW - timedelta(days=1), role="admin")
    return Tokens(acme, zenith, admin)


def sample(name: str, value: float, at: datetime, **labels: str) -> Sample:
    return Sample(
        name=name, value=value, unit="percent", time_ms=to_unix_ms(at), labels=labels_of(**labels)
    )


def endpoint(
    route: str, count: int, errors: int, duration_sum_ms: float, end: datetime
) -> EndpointStat:
    end_ms = to_unix_ms(end)
    return EndpointStat(
        route=route,
        method="GET",
        start_ms=end_ms - 60_000,
        end_ms=end_ms,
        count=count,
        errors=errors,
        duration_sum_ms=duration_sum_ms,
        duration_min_ms=1.0,
        duration_max_ms=duration_sum_ms,
        last_error="HTTP 500" if errors else "",
        last_error_ms=end_ms - 1000 if errors else 0,
        source="middleware",
    )


def write(
    store: SQLAlchemyMetricStore,
    dealer_id: str,
    seq: int,
    received_at: datetime,
    samples: tuple[Sample, ...] = (),
    endpoints: tuple[EndpointStat, ...] = (),
) -> None:
    """One batch of ``dealer_id``'s agent, received (and so last seen) at ``received_at``."""
    built = MetricBatch(
        agent_id=f"{dealer_id}-agent",
        dealer_id=dealer_id,
        seq=seq,
        boot_id="boot-a",
        hostname="dms-01",
        agent_version="0.1.0",
        created_ms=to_unix_ms(received_at),
        samples=samples,
        endpoints=endpoints,
    )
    content = dataclasses.replace(built, digest=b"")
    digest = hashlib.sha256(repr(content).encode()).digest()
    store.write_batches([dataclasses.replace(built, digest=digest)], received_at)


def fill_acme(store: SQLAlchemyMetricStore, at: datetime = NOW) -> None:
    """Acme's last minute: two endpoints, host figures of two disks and one NIC."""
    write(
        store,
        ACME,
        1,
        at - timedelta(seconds=30),
        samples=(
            sample("cpu.percent", 42.0, at - timedelta(seconds=40)),
            sample("cpu.core.percent", 99.0, at - timedelta(seconds=40), core="0"),
            sample("memory.percent", 63.0, at - timedelta(seconds=40)),
            sample("disk.used_percent", 70.0, at - timedelta(seconds=40), mount="/"),
            sample("disk.used_percent", 91.0, at - timedelta(seconds=40), mount="/data"),
            sample("net.recv_percent", 3.0, at - timedelta(seconds=40), nic="eth0"),
            sample("net.sent_percent", 12.0, at - timedelta(seconds=40), nic="eth0"),
        ),
        endpoints=(
            endpoint("/api/vehicles", 100, 2, 5000.0, at - timedelta(seconds=60)),
            endpoint("/api/leads", 50, 0, 1000.0, at - timedelta(seconds=60)),
        ),
    )


def fill_zenith(store: SQLAlchemyMetricStore, at: datetime = NOW) -> None:
    write(
        store,
        ZENITH,
        1,
        at - timedelta(seconds=30),
        samples=(sample("cpu.percent", 7.0, at - timedelta(seconds=40)),),
        endpoints=(endpoint("/api/parts", 10, 0, 100.0, at - timedelta(seconds=60)),),
    )
