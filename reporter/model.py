"""The reporter's plain data: what the query layer returns and the analysis adds.

Every part of the reporter (rollup queries, trend tests, recommendation
rules, the gRPC service, the HTTP gateway, report rendering) speaks these
frozen dataclasses; protobuf and JSON encodings live at the edges.

Conventions: datetimes are timezone-aware UTC; a bucket's ``time`` is its
start; a value of ``None`` means "no data" (never 0, which is a measurement).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Protocol

from collector.health import DealerHealth

# Named ranges the API accepts, as the seed's timeRange parameter spells them.
NAMED_RANGES: Mapping[str, timedelta] = {
    "1h": timedelta(hours=1),
    "24h": timedelta(hours=24),
    "7d": timedelta(days=7),
    "30d": timedelta(days=30),
}

_RANGE_PATTERN = re.compile(r"^(\d{1,4})([mhd])$")
_UNIT = {"m": timedelta(minutes=1), "h": timedelta(hours=1), "d": timedelta(days=1)}
MAX_RANGE = timedelta(days=400)


class RangeError(ValueError):
    """A time range that cannot be served; the message names what is wrong."""


@dataclass(frozen=True, slots=True)
class TimeRange:
    """[start, end), both aware UTC."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise RangeError("range start and end must be timezone-aware")
        if self.end <= self.start:
            raise RangeError(f"range end {self.end.isoformat()} is not after start")
        if self.end - self.start > MAX_RANGE:
            raise RangeError(f"range longer than {MAX_RANGE.days} days")

    @property
    def duration(self) -> timedelta:
        return self.end - self.start

    @classmethod
    def last(cls, name: str, now: datetime) -> TimeRange:
        """``1h``/``24h``/``7d``/``30d`` (or any ``<n>m|h|d``) ending at ``now``."""
        match = _RANGE_PATTERN.match(name.strip())
        if match is None:
            raise RangeError(
                f"timeRange {name!r} is not one of {', '.join(NAMED_RANGES)} or <n>m/<n>h/<n>d"
            )
        length = int(match.group(1)) * _UNIT[match.group(2)]
        if length <= timedelta(0):
            raise RangeError(f"timeRange {name!r} is empty")
        return cls(now - length, now)


def step_for(duration: timedelta) -> timedelta:
    """The series step that suits a range: about 60-720 points, on rollup sizes.

    1h -> 1 min (60 points), 24h -> 5 min (288), 7d -> 1 h (168), 30d -> 1 h (720).
    """
    if duration <= timedelta(hours=6):
        return timedelta(minutes=1)
    if duration <= timedelta(days=2):
        return timedelta(minutes=5)
    if duration <= timedelta(days=45):
        return timedelta(hours=1)
    return timedelta(days=1)


@dataclass(frozen=True, slots=True)
class Point:
    time: datetime
    value: float | None


@dataclass(frozen=True, slots=True)
class Series:
    """One line of a chart: ``name`` is a metric-like key, e.g. ``response_time.avg_ms``."""

    name: str
    unit: str
    step: timedelta
    points: tuple[Point, ...]

    def values(self) -> list[float]:
        """The measured values, oldest first, gaps left out."""
        return [p.value for p in self.points if p.value is not None]


@dataclass(frozen=True, slots=True)
class EndpointAnalytics:
    route: str
    method: str
    requests: int
    errors: int  # 5xx and transport errors
    client_errors: int  # 4xx
    error_rate_percent: float | None
    success_rate_percent: float | None
    calls_per_hour: float
    avg_ms: float | None
    peak_ms: float | None
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    last_error: str
    last_error_at: datetime | None
    # Per step: avg ms, error rate %, requests per minute.
    response_time: Series
    error_rate: Series
    throughput: Series


@dataclass(frozen=True, slots=True)
class ResourceUsage:
    """One host resource over the range, all agents of the scope together.

    ``name`` is the stored metric (``cpu.percent``, ``memory.percent``,
    ``disk.percent``, ``network.percent``); ``labels`` tells which disk or
    agent when there are several.
    """

    name: str
    unit: str
    labels: Mapping[str, str]
    avg: float | None
    peak: float | None
    latest: float | None
    series: Series


@dataclass(frozen=True, slots=True)
class Summary:
    """The seed's analytics summary, over the whole range."""

    requests: int
    errors: int
    error_rate_percent: float | None
    avg_ms: float | None
    peak_ms: float | None
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    throughput_per_min: float
    uptime_percent: float | None


@dataclass(frozen=True, slots=True)
class AnalyticsData:
    """What the query layer reads from rollups for one dealer (or all: ``None``)."""

    dealer_id: str | None
    range: TimeRange
    step: timedelta
    summary: Summary
    endpoints: tuple[EndpointAnalytics, ...]
    # Dealer-wide per step: avg ms, p95 ms, error rate %, requests per minute.
    response_time: Series
    response_time_p95: Series
    error_rate: Series
    throughput: Series
    resources: tuple[ResourceUsage, ...]
    # Extra host series the recommendation rules need, keyed by metric name,
    # e.g. "memory.used_bytes", "memory.total_bytes", "disk.used_bytes".
    host: Mapping[str, tuple[ResourceUsage, ...]] = field(default_factory=dict)


class Direction(StrEnum):
    IMPROVING = "improving"
    STABLE = "stable"
    DEGRADING = "degrading"
    INCREASING = "increasing"
    DECREASING = "decreasing"
    INSUFFICIENT_DATA = "insufficient_data"


@dataclass(frozen=True, slots=True)
class Trend:
    """A statistical verdict on one series (not a comparison of two numbers)."""

    metric: str  # "response_time", "error_rate", "throughput"
    direction: Direction
    method: str  # e.g. "mann-kendall"
    n: int  # points tested
    p_value: float | None
    # Theil-Sen slope in the series' unit per hour, and relative change over the range.
    slope_per_hour: float | None
    change_percent: float | None


class Impact(StrEnum):
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


class Effort(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


@dataclass(frozen=True, slots=True)
class Recommendation:
    type: str  # stable key, e.g. "cache_endpoint", "memory_leak", "disk_full"
    title: str
    description: str
    impact: Impact
    effort: Effort
    priority: int  # 1 = do first
    dealer_id: str | None
    range: TimeRange
    # The numbers that triggered the rule, by name (e.g. "p95_ms": 840.0).
    evidence: Mapping[str, float | str]
    endpoint: str = ""  # "GET /api/x" when the rule is about one endpoint


@dataclass(frozen=True, slots=True)
class Analytics:
    """``GetAnalytics``: the data plus trends and recommendations."""

    data: AnalyticsData
    trends: tuple[Trend, ...]
    recommendations: tuple[Recommendation, ...]


@dataclass(frozen=True, slots=True)
class ResourceSnapshot:
    cpu_percent: float | None
    memory_percent: float | None
    disk_percent: float | None  # the fullest real mount
    network_percent: float | None  # of link speed, where known
    as_of: datetime | None


@dataclass(frozen=True, slots=True)
class Realtime:
    """``GetRealtime``: the seed's real-time payload for one dealer, as of now."""

    health: DealerHealth
    resources: ResourceSnapshot
    as_of: datetime


class ReportFormat(StrEnum):
    HTML = "html"
    JSON = "json"
    TEXT = "text"


@dataclass(frozen=True, slots=True)
class ReportRecord:
    """A stored report; ``body`` holds the rendering in ``format``."""

    report_id: int
    dealer_id: str | None
    period: str  # "daily", "weekly", "adhoc"
    range: TimeRange
    format: ReportFormat
    created_at: datetime
    title: str
    body: bytes = b""


class Reporter(Protocol):
    """The reporter's operations, whatever the transport (gRPC, HTTP, CLI).

    ``dealer_id=None`` means every dealer; callers enforce who may ask.
    Implementations are synchronous (they read the store); async transports
    call them in a worker thread.
    """

    def realtime(self, dealer_id: str) -> Realtime: ...

    def analytics(self, dealer_id: str | None, time_range: TimeRange) -> Analytics: ...

    def recommendations(
        self, dealer_id: str | None, time_range: TimeRange
    ) -> tuple[Recommendation, ...]: ...

    def generate_report(
        self, dealer_id: str | None, time_range: TimeRange, fmt: ReportFormat
    ) -> ReportRecord: ...

    def list_reports(self, dealer_id: str | None, limit: int = 50) -> list[ReportRecord]:
        """Newest first, without bodies."""
        ...

    def get_report(self, report_id: int, fmt: ReportFormat | None = None) -> ReportRecord | None:
        """With its body."""
        ...
