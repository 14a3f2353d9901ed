"""CUMULATIVE OTLP histograms -> DELTA, so the OpenTelemetry SDK's default works as is.

A cumulative point carries everything since its stream's start; what happened
in the last export interval is that point minus the previous one of the same
stream. A stream is (dealer, resource attributes, scope, metric, point
attributes, start_time_unix_nano): a new start time is a new stream.

The rules follow the OpenTelemetry Collector's ``cumulativetodelta`` processor
with ``initial_value: auto``:

- The first point of a stream is used whole when its start time is set,
  differs from its own time, and is not before this collector process started
  (the stream began while we were listening, so we saw all of it). Otherwise it
  only becomes the baseline and is dropped: part of it was counted by whoever
  (an earlier process) saw the stream before. Dropped baselines are not
  rejected points, just counted in :class:`TrackerStats`.
- One addition to ``auto``: a first point is also used whole when it starts
  at or after the latest point time this process has seen from the same
  resource. The Python SDK starts a new attribute set (a route's first 500)
  at its previous collection, so a long-running app's new series would
  otherwise lose their first interval after a collector restart.
- A later point yields the difference of counts, bucket counts and sums.
  Minimum and maximum cannot be subtracted: the delta has the cumulative max
  (min) only when it grew (fell) in this interval, which proves the extreme
  happened in it; otherwise neither, and the quantile sketch's bucket values
  stand in (see :mod:`collector.otlp.convert`).
- A reset without a new start time (a count or bucket count went down, which
  the data model forbids but a crashed app may do) starts a new baseline and,
  like Prometheus' ``rate``, the point counts whole: a counter that restarted
  from zero holds only what happened since the previous point. A changed bucket
  layout (other explicit bounds, or a finer exponential scale) also starts a
  new baseline, but its point is dropped: nothing says what part of it is new.
  An exponential scale that got coarser (the SDK downscales as the range
  grows) is handled by merging the baseline's buckets to the new scale.
- Memory is bounded: at most ``max_streams`` baselines (the least recently
  used goes first) and none idle longer than ``max_idle_s``; both counted.

Known limit: the baselines live in this process. With ``--workers N`` an
exporter that reconnects to another worker and later back can have an
interval counted twice; use DELTA temporality there (see the user guide).
"""

from __future__ import annotations

import enum
import logging
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.metrics.v1 import metrics_pb2

from dealerpulse.clock import Clock

logger = logging.getLogger(__name__)

DEFAULT_MAX_STREAMS = 50_000
# Well past the SDK's 60 s export interval: a stream silent this long has
# most likely ended, and a new baseline only costs its next interval.
DEFAULT_MAX_IDLE_S = 3600.0
_CUMULATIVE = metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE
_DELTA = metrics_pb2.AGGREGATION_TEMPORALITY_DELTA

Explicit = metrics_pb2.HistogramDataPoint
Exponential = metrics_pb2.ExponentialHistogramDataPoint
Attributes = tuple[tuple[str, bytes], ...]
StreamKey = tuple[str, Attributes, str, str, str, Attributes, int]


class _Break(enum.Enum):
    """Why a point cannot be subtracted from its baseline."""

    RESET = "counts went down"
    LAYOUT = "bucket layout changed"


@dataclass(slots=True)
class TrackerStats:
    streams: int = 0
    # First points that only set a baseline (not stored, not rejected).
    baselines: int = 0
    # Points whose counts went down: counted whole, new baseline.
    resets: int = 0
    # Points whose bucket layout changed: dropped, new baseline.
    layout_changes: int = 0
    evicted: int = 0
    expired: int = 0


@dataclass(slots=True)
class _Baseline:
    point: Explicit | Exponential
    seen_s: float


@dataclass(slots=True)
class CumulativeToDelta:
    """Rewrites the CUMULATIVE histograms named ``metric`` of requests into DELTA ones."""

    metric: str
    clock: Clock
    max_streams: int = DEFAULT_MAX_STREAMS
    max_idle_s: float = DEFAULT_MAX_IDLE_S
    stats: TrackerStats = field(default_factory=TrackerStats)
    _started_ns: int = 0
    # While one resource is rewritten: its latest point time before this
    # request (None: never heard from), and the latest one so far.
    _heard_until_ns: int | None = None
    _latest_ns: int = 0
    _baselines: OrderedDict[StreamKey, _Baseline] = field(default_factory=OrderedDict)
    # Per (dealer, resource): the latest point time seen, and when (monotonic).
    _resources: OrderedDict[tuple[str, Attributes], tuple[int, float]] = field(
        default_factory=OrderedDict
    )

    def __post_init__(self) -> None:
        if self.max_streams < 1 or self.max_idle_s <= 0:
            raise ValueError("max_streams must be >= 1 and max_idle_s > 0")
        self._started_ns = int(self.clock.now().timestamp() * 1e9)

    def to_delta(self, dealer_id: str, request: ExportMetricsServiceRequest) -> None:
        """Replace, in place, each cumulative point of ``metric`` by its delta (or drop it)."""
        self._expire()
        for resource_metrics in request.resource_metrics:
            resource = _identity(resource_metrics.resource.attributes)
            seen = self._resources.pop((dealer_id, resource), None)
            self._heard_until_ns = seen[0] if seen else None
            self._latest_ns = seen[0] if seen else 0
            for scope_metrics in resource_metrics.scope_metrics:
                scope = scope_metrics.scope
                for metric in scope_metrics.metrics:
                    if metric.name != self.metric:
                        continue
                    kind = metric.WhichOneof("data")
                    if kind not in ("histogram", "exponential_histogram"):
                        continue
                    data = getattr(metric, kind)
                    if data.aggregation_temporality != _CUMULATIVE:
                        continue
                    prefix = (dealer_id, resource, scope.name, scope.version, kind)
                    deltas = [self._delta(prefix, point) for point in data.data_points]
                    del data.data_points[:]
                    data.data_points.extend(d for d in deltas if d is not None)
                    data.aggregation_temporality = _DELTA
            if self._latest_ns:  # only resources that sent points of ours
                self._resources[(dealer_id, resource)] = (self._latest_ns, self.clock.monotonic())
            while len(self._resources) > self.max_streams:
                self._resources.popitem(last=False)

    def _delta(
        self, prefix: tuple[str, Attributes, str, str, str], point: Explicit | Exponential
    ) -> Explicit | Exponential | None:
        key: StreamKey = (*prefix, _identity(point.attributes), point.start_time_unix_nano)
        self._latest_ns = max(self._latest_ns, point.time_unix_nano)
        previous = self._baselines.pop(key, None)
        self._remember(key, point)
        if previous is None:
            self.stats.streams += 1
            if self._saw_whole_stream(point):
                return point
            self.stats.baselines += 1
            return None
        delta: Explicit | Exponential | _Break
        if isinstance(point, Explicit) and isinstance(previous.point, Explicit):
            delta = _explicit_delta(previous.point, point)
        elif isinstance(point, Exponential) and isinstance(previous.point, Exponential):
            delta = _exponential_delta(previous.point, point)
        else:  # the key holds the kind, so this cannot happen; for the type checker
            delta = _Break.LAYOUT
        if delta is _Break.LAYOUT:
            self.stats.layout_changes += 1
            logger.debug("OTLP stream %s: bucket layout changed; new baseline", key[4:])
            return None
        if delta is _Break.RESET:
            self.stats.resets += 1
            return point
        return delta

    def _saw_whole_stream(self, point: Explicit | Exponential) -> bool:
        start = point.start_time_unix_nano
        if start == 0 or start == point.time_unix_nano:
            return False
        heard = self._heard_until_ns
        return start >= self._started_ns or (heard is not None and start >= heard)

    def _remember(self, key: StreamKey, point: Explicit | Exponential) -> None:
        copy: Explicit | Exponential
        if isinstance(point, Explicit):
            copy = Explicit()
            copy.CopyFrom(point)
        else:
            copy = Exponential()
            copy.CopyFrom(point)
        self._baselines[key] = _Baseline(copy, self.clock.monotonic())
        while len(self._baselines) > self.max_streams:
            self._baselines.popitem(last=False)
            self.stats.evicted += 1

    def _expire(self) -> None:
        # Least recently seen first: stop at the first one still fresh.
        oldest_allowed = self.clock.monotonic() - self.max_idle_s
        while self._baselines:
            key, baseline = next(iter(self._baselines.items()))
            if baseline.seen_s >= oldest_allowed:
                break
            del self._baselines[key]
            self.stats.expired += 1
        while self._resources and next(iter(self._resources.values()))[1] < oldest_allowed:
            self._resources.popitem(last=False)

    def __len__(self) -> int:
        return len(self._baselines)


def _explicit_delta(previous: Explicit, current: Explicit) -> Explicit | _Break:
    if list(previous.explicit_bounds) != list(current.explicit_bounds) or len(
        previous.bucket_counts
    ) != len(current.bucket_counts):
        return _Break.LAYOUT
    buckets = [c - p for c, p in zip(current.bucket_counts, previous.bucket_counts, strict=True)]
    if current.count < previous.count or min(buckets, default=0) < 0:
        return _Break.RESET
    delta = Explicit()
    delta.CopyFrom(current)
    delta.start_time_unix_nano = previous.time_unix_nano
    delta.count = current.count - previous.count
    del delta.bucket_counts[:]
    delta.bucket_counts.extend(buckets)
    _subtract_stats(previous, current, delta)
    return delta


def _exponential_delta(previous: Exponential, current: Exponential) -> Exponential | _Break:
    if current.scale > previous.scale:
        return _Break.LAYOUT  # finer than before: the baseline cannot be split
    shift = previous.scale - current.scale
    positive = _minus(_buckets(current.positive), _downscaled(_buckets(previous.positive), shift))
    negative = _minus(_buckets(current.negative), _downscaled(_buckets(previous.negative), shift))
    zero = current.zero_count - previous.zero_count
    if positive is None or negative is None or zero < 0 or current.count < previous.count:
        return _Break.RESET
    delta = Exponential()
    delta.CopyFrom(current)
    delta.start_time_unix_nano = previous.time_unix_nano
    delta.count = current.count - previous.count
    delta.zero_count = zero
    _set_buckets(delta.positive, positive)
    _set_buckets(delta.negative, negative)
    _subtract_stats(previous, current, delta)
    return delta


def _subtract_stats(
    previous: Explicit | Exponential, current: Explicit | Exponential, delta: Explicit | Exponential
) -> None:
    if current.HasField("sum") and previous.HasField("sum"):
        # Float noise can make a tiny interval's sum slightly negative.
        delta.sum = max(current.sum - previous.sum, 0.0)
    else:
        delta.ClearField("sum")
    grew = current.HasField("max") and previous.HasField("max") and current.max > previous.max
    if not grew:
        delta.ClearField("max")
    fell = current.HasField("min") and previous.HasField("min") and current.min < previous.min
    if not fell:
        delta.ClearField("min")


def _buckets(buckets: Exponential.Buckets) -> dict[int, int]:
    return {
        buckets.offset + position: count
        for position, count in enumerate(buckets.bucket_counts)
        if count
    }


def _downscaled(counts: dict[int, int], shift: int) -> dict[int, int]:
    """Buckets at scale s as buckets at scale s - shift (each 2**shift of them merge)."""
    if shift == 0:
        return counts
    merged: dict[int, int] = {}
    for index, count in counts.items():
        merged[index >> shift] = merged.get(index >> shift, 0) + count
    return merged


def _minus(current: dict[int, int], previous: dict[int, int]) -> dict[int, int] | None:
    """current - previous per bucket; None if any bucket went down."""
    result = dict(current)
    for index, count in previous.items():
        left = result.get(index, 0) - count
        if left < 0:
            return None
        result[index] = left
    return result


def _set_buckets(buckets: Exponential.Buckets, counts: dict[int, int]) -> None:
    used = [index for index, count in counts.items() if count]
    del buckets.bucket_counts[:]
    if not used:
        buckets.offset = 0
        return
    low, high = min(used), max(used)
    buckets.offset = low
    buckets.bucket_counts.extend(counts.get(index, 0) for index in range(low, high + 1))


def _identity(attributes: Iterable[KeyValue]) -> Attributes:
    """A canonical form of an attribute set (order does not matter)."""
    return tuple(
        sorted((pair.key, pair.value.SerializeToString(deterministic=True)) for pair in attributes)
    )
