"""Operator actions on the store: register dealers, summarise what agents report."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from collector.abc import AgentRecord, Dealer, DealerExists, LatestSample, MetricStore
from collector.health import (
    DealerHealth,
    HealthStore,
    HealthThresholds,
    dealer_health,
    health_range,
)
from dealerpulse import tokens
from dealerpulse.clock import Clock, SystemClock

# The resource figures `dealerpulse status` shows, by metric name.
STATUS_METRICS = (
    "cpu.percent",
    "load.1m",
    "memory.percent",
    "swap.percent",
    "disk.used_percent",
    "net.recv_bytes_per_s",
    "net.sent_bytes_per_s",
)


def add_dealer(
    store: MetricStore, name: str, dealer_id: str | None = None, clock: Clock | None = None
) -> tuple[Dealer, str]:
    """Register a dealer; returns it with its token, which is shown once and never stored."""
    clean_name = name.strip()
    if not clean_name:
        raise ValueError("dealer name must not be empty")
    dealer_id = tokens.validate_dealer_id(dealer_id) if dealer_id else tokens.slugify(clean_name)
    if store.get_dealer(dealer_id) is not None:
        raise DealerExists(f"dealer {dealer_id!r} exists already")
    token = tokens.new_token(dealer_id)
    now = (clock or SystemClock()).now()
    dealer = store.create_dealer(dealer_id, clean_name, tokens.hash_token(token), now)
    return dealer, token


@dataclass(frozen=True, slots=True)
class AgentStatus:
    """The newest resource usage one agent reported."""

    dealer_id: str
    agent_id: str
    hostname: str
    last_seen: datetime
    sample_time: datetime | None
    cpu_percent: float | None
    load_1m: float | None
    memory_percent: float | None
    swap_percent: float | None
    disk_percent_max: float | None
    net_recv_bytes_per_s: float | None
    net_sent_bytes_per_s: float | None
    spool_batches: int
    dropped_samples: int
    # The agent's clock minus the collector's (None: not estimated yet).
    clock_offset_ms: int | None = None


def agent_statuses(store: MetricStore, dealer_id: str | None = None) -> list[AgentStatus]:
    latest = store.latest_samples(dealer_id, STATUS_METRICS)
    by_agent: dict[str, list[LatestSample]] = {}
    for sample in latest:
        by_agent.setdefault(sample.agent_id, []).append(sample)
    return [
        _status_of(agent, by_agent.get(agent.agent_id, []))
        for agent in sorted(store.list_agents(dealer_id), key=lambda a: (a.dealer_id, a.hostname))
    ]


def _status_of(agent: AgentRecord, samples: list[LatestSample]) -> AgentStatus:
    def pick(name: str, combine: str = "max") -> float | None:
        values = [s.value for s in samples if s.name == name]
        if not values:
            return None
        return sum(values) if combine == "sum" else max(values)

    # Per-NIC rates are summed; "total" series would double count, so skip labelled totals.
    def net(name: str) -> float | None:
        values = [s.value for s in samples if s.name == name and dict(s.labels).get("nic")]
        return sum(values) if values else pick(name)

    times = [s.time for s in samples]
    return AgentStatus(
        dealer_id=agent.dealer_id,
        agent_id=agent.agent_id,
        hostname=agent.hostname,
        last_seen=agent.last_seen,
        sample_time=max(times) if times else None,
        cpu_percent=pick("cpu.percent"),
        load_1m=pick("load.1m"),
        memory_percent=pick("memory.percent"),
        swap_percent=pick("swap.percent"),
        disk_percent_max=pick("disk.used_percent"),
        net_recv_bytes_per_s=net("net.recv_bytes_per_s"),
        net_sent_bytes_per_s=net("net.sent_bytes_per_s"),
        spool_batches=agent.spool_batches,
        dropped_samples=sum(agent.dropped_samples.values()),
        clock_offset_ms=agent.clock_offset_ms,
    )


def dealer_healths(
    store: MetricStore,
    dealer_id: str | None,
    window_s: float,
    thresholds: HealthThresholds | None = None,
    clock: Clock | None = None,
) -> list[DealerHealth]:
    """System health of every dealer (or one) over the last window_s seconds."""
    if not isinstance(store, HealthStore):
        raise TypeError(f"{type(store).__name__} cannot query endpoint statistics")
    start, end = health_range(window_s=window_s, clock=clock)
    dealers = [d.dealer_id for d in store.list_dealers()]
    if dealer_id is not None:
        dealers = [d for d in dealers if d == dealer_id]
    return [dealer_health(store, d, start, end, thresholds) for d in dealers]
