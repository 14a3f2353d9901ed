"""System health of a dealer: pure functions over stored endpoint statistics and samples.

:func:`compute_health` takes what the store returned and computes, over a
range ``[start, end)``:

- traffic figures from API requests (every source but the probes): request
  count, throughput (requests per minute), error rate %, average and
  p50/p95/p99 response time from the merged latency sketches (within the
  sketch's relative error of the exact values, for the requests that carried
  a sketch);
- per endpoint (probes included): calls per hour, success rate, error count,
  last error;
- uptime %: from the probes' checks when there are any (successful checks /
  checks: with a fixed probe interval that is the fraction of time up), else
  from agent liveness (the fraction of the range covered by the agent's
  ``cpu.percent`` samples, at the spacing they usually have);
- a status, healthy / warning / critical, from the ALERT_THRESHOLD_* settings
  (see :class:`HealthThresholds`), and a separate resource status from the
  newest CPU and memory figures.

:func:`dealer_health` reads the store and calls it; the reporter reuses both.
"""

from __future__ import annotations

import itertools
import logging
import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, runtime_checkable

from collector.abc import LatestSample, StoredSample
from dealerpulse.clock import Clock, SystemClock, from_unix_ms, to_unix_ms
from dealerpulse.config import Option, positive_float, resolve
from dealerpulse.model import EndpointStat, LatencySketch
from dealerpulse.sketch import SketchError

if TYPE_CHECKING:
    from collector.store.sketch import SketchSum

logger = logging.getLogger(__name__)

DEFAULT_WINDOW_S = 300.0
PROBE_SOURCE = "probe"
LIVENESS_METRIC = "cpu.percent"
# The newest figures health reads (the resource status).
LATEST_METRICS = ("cpu.percent", "memory.percent")
# A threshold exceeded by this factor (response time, error rate) is critical.
RESPONSE_TIME_CRITICAL_FACTOR = 2.0
ERROR_RATE_CRITICAL_FACTOR = 10.0
UPTIME_WARNING_PERCENT = 99.9
UPTIME_CRITICAL_PERCENT = 99.0


class Status(StrEnum):
    HEALTHY = "healthy"
    WARNING = "warning"
    CRITICAL = "critical"


_RANK = {Status.HEALTHY: 0, Status.WARNING: 1, Status.CRITICAL: 2}


def worst(statuses: Iterable[Status]) -> Status:
    return max(statuses, key=_RANK.__getitem__, default=Status.HEALTHY)


HEALTH_OPTIONS: tuple[Option, ...] = (
    Option(
        "alert_threshold_response_time",
        positive_float,
        200.0,
        "average response time (ms) above which a dealer's health is warning (2x: critical)",
        env=("ALERT_THRESHOLD_RESPONSE_TIME",),
    ),
    Option(
        "alert_threshold_error_rate",
        positive_float,
        0.1,
        "error rate (%) above which a dealer's health is warning (10x: critical)",
        env=("ALERT_THRESHOLD_ERROR_RATE",),
    ),
    Option(
        "alert_threshold_cpu",
        positive_float,
        80.0,
        "CPU use (%) above which the resource status is warning",
        env=("ALERT_THRESHOLD_CPU",),
    ),
    Option(
        "alert_threshold_memory",
        positive_float,
        85.0,
        "memory use (%) above which the resource status is warning",
        env=("ALERT_THRESHOLD_MEMORY",),
    ),
)


@dataclass(frozen=True, slots=True)
class HealthThresholds:
    response_time_ms: float = 200.0
    error_rate_percent: float = 0.1
    cpu_percent: float = 80.0
    memory_percent: float = 85.0

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> HealthThresholds:
        """From resolve(HEALTH_OPTIONS, ...) output."""
        return cls(
            response_time_ms=values["alert_threshold_response_time"],
            error_rate_percent=values["alert_threshold_error_rate"],
            cpu_percent=values["alert_threshold_cpu"],
            memory_percent=values["alert_threshold_memory"],
        )

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> HealthThresholds:
        return cls.from_values(resolve(HEALTH_OPTIONS, {}, env))


@dataclass(frozen=True, slots=True)
class EndpointHealth:
    route: str
    method: str
    source: str
    requests: int
    calls_per_hour: float
    errors: int
    client_errors: int
    success_rate_percent: float
    avg_ms: float | None
    p95_ms: float | None
    last_error: str
    last_error_at: datetime | None


@dataclass(frozen=True, slots=True)
class DealerHealth:
    dealer_id: str
    start: datetime
    end: datetime
    requests: int
    errors: int
    throughput_per_min: float
    error_rate_percent: float | None
    avg_ms: float | None
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    uptime_percent: float | None
    # "probes", "agent" or "" (unknown: no probe and too few samples)
    uptime_source: str
    cpu_percent: float | None
    memory_percent: float | None
    status: Status
    resource_status: Status
    reasons: tuple[str, ...]
    endpoints: tuple[EndpointHealth, ...]


class HealthRow(NamedTuple):
    """What health needs of one EndpointStat (or api_performance row). A tuple: a
    store reader builds hundreds a call (see :mod:`reporter.queries.health`), and an
    EndpointStat costs several times more to make."""

    route: str
    method: str
    source: str
    requests: int  # not `count`: a tuple's method has that name
    errors: int
    client_errors: int
    duration_sum_ms: float
    duration_min_ms: float
    duration_max_ms: float
    last_error: str
    last_error_ms: int  # 0: none
    latency: LatencySketch | None


def health_row(stat: EndpointStat) -> HealthRow:
    return HealthRow(
        stat.route,
        stat.method,
        stat.source,
        stat.count,
        stat.errors,
        stat.client_errors,
        stat.duration_sum_ms,
        stat.duration_min_ms,
        stat.duration_max_ms,
        stat.last_error,
        stat.last_error_ms,
        stat.latency,
    )


class _Merged:
    """Sums of several health rows and the sum of their latency sketches."""

    def __init__(self) -> None:
        self.count = 0
        self.errors = 0
        self.client_errors = 0
        self.duration_sum_ms = 0.0
        self.last_error = ""
        self.last_error_ms = 0
        # By relative accuracy, in the order first added: quantiles come from the
        # first one (a sketch of another accuracy cannot merge into it).
        self.sketches: dict[float, SketchSum] = {}
        # Imported here: `dealerpulse status --help` builds this module's options
        # where only the agent's dependencies (no SQLAlchemy) are installed.
        from collector.store.sketch import SketchSum

        self._sketch_sum = SketchSum

    def add(self, row: HealthRow) -> None:
        """Add the row's counts (its sketch goes in through add_latency)."""
        self.count += row.requests
        self.errors += row.errors
        self.client_errors += row.client_errors
        self.duration_sum_ms += row.duration_sum_ms
        if row.errors and row.last_error_ms >= self.last_error_ms:
            self.last_error, self.last_error_ms = row.last_error, row.last_error_ms

    def add_latency(self, row: HealthRow) -> float | None:
        """Add the row's sketch; its accuracy, or None when it has none or it is refused."""
        latency = row.latency
        if latency is None or not row.requests:
            return None
        accuracy = latency.relative_accuracy
        try:
            summed = self.sketches.get(accuracy) or self._sketch_sum(accuracy)
            summed.add(latency, min_ms=row.duration_min_ms, max_ms=row.duration_max_ms)
        except SketchError as exc:  # a malformed stored sketch: counts still count
            logger.warning("cannot merge the latency sketch of %s: %s", row.route, exc)
            return None
        if accuracy not in self.sketches:
            self._note_accuracy(accuracy, row.route)
            self.sketches[accuracy] = summed
        return accuracy

    def reserve(self, accuracy: float) -> None:
        """Keep the order in which accuracies first came (merge_latency fills them)."""
        if accuracy not in self.sketches:
            self._note_accuracy(accuracy, "the dealer's traffic")
            self.sketches[accuracy] = self._sketch_sum(accuracy)

    def merge_latency(self, other: _Merged) -> None:
        for accuracy, summed in other.sketches.items():
            self.sketches.setdefault(accuracy, self._sketch_sum(accuracy)).merge(summed)

    def _note_accuracy(self, accuracy: float, what: str) -> None:
        if self.sketches:
            first = next(iter(self.sketches))
            logger.warning(
                "latency sketches of %s have relative accuracy %s and %s: "
                "percentiles from the %s ones only",
                what,
                first,
                accuracy,
                first,
            )

    def quantile(self, q: float) -> float | None:
        if not self.sketches:
            return None
        first = next(iter(self.sketches.values()))
        return first.quantile(q) if first.count else None

    @property
    def avg_ms(self) -> float | None:
        return self.duration_sum_ms / self.count if self.count else None


def compute_health(
    dealer_id: str,
    start: datetime,
    end: datetime,
    stats: Iterable[EndpointStat],
    liveness: Sequence[StoredSample] = (),
    latest: Sequence[LatestSample] = (),
    thresholds: HealthThresholds | None = None,
    monitored_since: datetime | None = None,
) -> DealerHealth:
    """Health of one dealer over [start, end) from its endpoint stats and samples.

    ``monitored_since`` (the dealer's first agent's first contact): agent-based
    uptime counts only from then, so a dealer monitored for one minute of a
    five-minute window is not 20 % up.
    """
    return health_of_rows(
        dealer_id,
        start,
        end,
        map(health_row, stats),
        liveness,
        latest,
        thresholds,
        monitored_since,
    )


def health_of_rows(
    dealer_id: str,
    start: datetime,
    end: datetime,
    rows: Iterable[HealthRow],
    liveness: Sequence[StoredSample] = (),
    latest: Sequence[LatestSample] = (),
    thresholds: HealthThresholds | None = None,
    monitored_since: datetime | None = None,
) -> DealerHealth:
    """:func:`compute_health` of the stats' :func:`health_row` tuples, oldest first."""
    if end <= start:
        raise ValueError(f"health range must not be empty: start {start} >= end {end}")
    thresholds = thresholds or HealthThresholds()
    minutes = (end - start).total_seconds() / 60
    traffic, probes, per_endpoint = _merge(rows)
    uptime_start = max(start, monitored_since) if monitored_since else start
    uptime, uptime_source = _uptime(probes, liveness, min(uptime_start, end), end)
    cpu, memory = _latest(latest, "cpu.percent"), _latest(latest, "memory.percent")
    error_rate = 100.0 * traffic.errors / traffic.count if traffic.count else None
    status, reasons = _traffic_status(traffic.avg_ms, error_rate, uptime, thresholds)
    resource_status, resource_reasons = _resource_status(cpu, memory, thresholds)
    return DealerHealth(
        dealer_id=dealer_id,
        start=start,
        end=end,
        requests=traffic.count,
        errors=traffic.errors,
        throughput_per_min=traffic.count / minutes,
        error_rate_percent=error_rate,
        avg_ms=traffic.avg_ms,
        p50_ms=traffic.quantile(0.5),
        p95_ms=traffic.quantile(0.95),
        p99_ms=traffic.quantile(0.99),
        uptime_percent=uptime,
        uptime_source=uptime_source,
        cpu_percent=cpu,
        memory_percent=memory,
        status=status,
        resource_status=resource_status,
        reasons=(*reasons, *resource_reasons),
        endpoints=tuple(
            _endpoint_health(key, merged, minutes / 60)
            for key, merged in sorted(per_endpoint.items(), key=lambda kv: (-kv[1].count, kv[0]))
        ),
    )


def _merge(
    rows: Iterable[HealthRow],
) -> tuple[_Merged, _Merged, dict[tuple[str, str, str], _Merged]]:
    """Traffic, probes and per-endpoint sums. Each sketch is decoded into its
    endpoint's sum only; traffic and probes merge the endpoint sums (bucket
    sums do not depend on order), which halves the work of health."""
    traffic, probes = _Merged(), _Merged()
    per_endpoint: dict[tuple[str, str, str], _Merged] = {}
    for row in rows:
        source = row.source
        group = probes if source == PROBE_SOURCE else traffic
        group.add(row)
        key = (row.route, row.method, source)
        endpoint = per_endpoint.get(key)
        if endpoint is None:
            endpoint = per_endpoint[key] = _Merged()
        endpoint.add(row)
        accuracy = endpoint.add_latency(row)
        if accuracy is not None:
            group.reserve(accuracy)
    for (_, _, source), endpoint in per_endpoint.items():
        (probes if source == PROBE_SOURCE else traffic).merge_latency(endpoint)
    return traffic, probes, per_endpoint


def _endpoint_health(key: tuple[str, str, str], merged: _Merged, hours: float) -> EndpointHealth:
    route, method, source = key
    count = merged.count
    return EndpointHealth(
        route=route,
        method=method,
        source=source,
        requests=count,
        calls_per_hour=count / hours,
        errors=merged.errors,
        client_errors=merged.client_errors,
        success_rate_percent=100.0 * (count - merged.errors) / count if count else 100.0,
        avg_ms=merged.avg_ms,
        p95_ms=merged.quantile(0.95),
        last_error=merged.last_error,
        last_error_at=from_unix_ms(merged.last_error_ms) if merged.last_error_ms else None,
    )


def _uptime(
    probes: _Merged, liveness: Sequence[StoredSample], start: datetime, end: datetime
) -> tuple[float | None, str]:
    if probes.count:
        return 100.0 * (probes.count - probes.errors) / probes.count, "probes"
    covered = liveness_coverage(
        [to_unix_ms(s.time) for s in liveness], to_unix_ms(start), to_unix_ms(end)
    )
    return (None, "") if covered is None else (100.0 * covered, "agent")


def liveness_coverage(times_ms: Sequence[int], start_ms: int, end_ms: int) -> float | None:
    """Fraction of [start_ms, end_ms) in which the agent reported, 0..1.

    The agent samples on a fixed interval, read here as the median spacing of
    its samples; each sample vouches for one interval. None with fewer than two
    distinct sample times (the interval cannot be told).
    """
    distinct = sorted({t for t in times_ms if start_ms <= t < end_ms})
    if len(distinct) < 2 or end_ms <= start_ms:
        return None
    interval = statistics.median(b - a for a, b in itertools.pairwise(distinct))
    return min(1.0, len(distinct) * interval / (end_ms - start_ms))


def _latest(latest: Sequence[LatestSample], name: str) -> float | None:
    # Unlabelled series only: the whole-host figure, not per core or per disk.
    values = [s.value for s in latest if s.name == name and not s.labels]
    return max(values) if values else None


def _traffic_status(
    avg_ms: float | None,
    error_rate: float | None,
    uptime: float | None,
    thresholds: HealthThresholds,
) -> tuple[Status, tuple[str, ...]]:
    found: list[tuple[Status, str]] = []
    if avg_ms is not None:
        found.append(
            _against(
                "avg response time",
                avg_ms,
                "ms",
                thresholds.response_time_ms,
                thresholds.response_time_ms * RESPONSE_TIME_CRITICAL_FACTOR,
            )
        )
    if error_rate is not None:
        found.append(
            _against(
                "error rate",
                error_rate,
                "%",
                thresholds.error_rate_percent,
                thresholds.error_rate_percent * ERROR_RATE_CRITICAL_FACTOR,
            )
        )
    if uptime is not None:
        if uptime < UPTIME_CRITICAL_PERCENT:
            found.append((Status.CRITICAL, f"uptime {uptime:.2f}% < {UPTIME_CRITICAL_PERCENT}%"))
        elif uptime < UPTIME_WARNING_PERCENT:
            found.append((Status.WARNING, f"uptime {uptime:.2f}% < {UPTIME_WARNING_PERCENT}%"))
    return _summarise(found)


def _resource_status(
    cpu: float | None, memory: float | None, thresholds: HealthThresholds
) -> tuple[Status, tuple[str, ...]]:
    found: list[tuple[Status, str]] = []
    # Critical half way from the warning threshold to 100 %.
    if cpu is not None:
        limit = thresholds.cpu_percent
        found.append(_against("cpu", cpu, "%", limit, limit + (100 - limit) / 2))
    if memory is not None:
        limit = thresholds.memory_percent
        found.append(_against("memory", memory, "%", limit, limit + (100 - limit) / 2))
    return _summarise(found)


def _against(
    what: str, value: float, unit: str, warning: float, critical: float
) -> tuple[Status, str]:
    if value > critical:
        return Status.CRITICAL, f"{what} {value:.3g}{unit} > {critical:.3g}{unit}"
    if value > warning:
        return Status.WARNING, f"{what} {value:.3g}{unit} > {warning:.3g}{unit}"
    return Status.HEALTHY, ""


def _summarise(found: list[tuple[Status, str]]) -> tuple[Status, tuple[str, ...]]:
    return worst(s for s, _ in found), tuple(reason for _, reason in found if reason)


@runtime_checkable
class HealthStore(Protocol):
    """What dealer_health reads (SQLAlchemyMetricStore has it all)."""

    def query_endpoint_stats(
        self, dealer_id: str, start: datetime, end: datetime, agent_id: str | None = None
    ) -> Sequence[Any]: ...

    def query_samples(
        self, dealer_id: str, name: str, start: datetime, end: datetime, agent_id: str | None = None
    ) -> list[StoredSample]: ...

    def latest_samples(
        self, dealer_id: str | None = None, names: Sequence[str] | None = None
    ) -> list[LatestSample]: ...


def health_range(
    end: datetime | None = None,
    window_s: float = DEFAULT_WINDOW_S,
    clock: Clock | None = None,
) -> tuple[datetime, datetime]:
    """[end - window, end), end defaulting to now."""
    if not math.isfinite(window_s) or window_s <= 0:
        raise ValueError(f"window_s must be a positive number of seconds, got {window_s!r}")
    end = end or (clock or SystemClock()).now()
    return end - timedelta(seconds=window_s), end


@runtime_checkable
class AgentDirectory(Protocol):
    """Stores that know when each agent first reported (for uptime since then)."""

    def list_agents(self, dealer_id: str | None = None) -> Sequence[Any]: ...


def dealer_health(
    store: HealthStore,
    dealer_id: str,
    start: datetime,
    end: datetime,
    thresholds: HealthThresholds | None = None,
) -> DealerHealth:
    """Read what health needs from the store and compute it."""
    records = store.query_endpoint_stats(dealer_id, start, end)
    liveness = one_agent_liveness(store.query_samples(dealer_id, LIVENESS_METRIC, start, end))
    latest = store.latest_samples(dealer_id, list(LATEST_METRICS))
    since = None
    if isinstance(store, AgentDirectory):
        firsts = [agent.first_seen for agent in store.list_agents(dealer_id)]
        since = monitoring_began(firsts, liveness)
    return compute_health(
        dealer_id,
        start,
        end,
        [r.stat for r in records],
        liveness,
        latest,
        thresholds,
        monitored_since=since,
    )


def one_agent_liveness(samples: list[StoredSample]) -> list[StoredSample]:
    # Host-wide samples only; several agents of one dealer share sample times
    # (they align on interval boundaries), so a set of times measures "any up".
    return [s for s in samples if not s.labels]


def monitoring_began(
    first_seen: Sequence[datetime], liveness: Sequence[StoredSample]
) -> datetime | None:
    """When the dealer's monitoring began: its agents' first contact or, as spooled
    samples can predate that, its oldest liveness sample, whichever came first."""
    firsts = [*first_seen, *(sample.time for sample in liveness[:1])]
    return min(firsts) if firsts else None
