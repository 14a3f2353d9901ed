"""Checks every incoming batch before it reaches the writer.

A pure function: the batch, what the service knows about the caller, the
current time and the limits go in; a :class:`Rejection` naming the offending
field (in the wire's terms, e.g. ``samples[3].value``) or ``None`` comes out.

Besides the documented rules it refuses what the store could not hold -- NUL
characters (PostgreSQL text cannot), integers beyond 64-bit signed -- because
one such batch would fail the whole group commit it shares with other agents.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from operator import itemgetter

import grpc

from collector.abc import AgentInfo
from collector.ingest.codec import Rejection
from dealerpulse.columns import SampleTable
from dealerpulse.model import EndpointStat, Gap, Labels, LatencySketch, MetricBatch, Sample

NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.:-]*")
LABEL_KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
_NUL_RE = re.compile(r"\x00")
MAX_INT64 = 2**63 - 1
DAY_S = 86_400

SeriesSpec = tuple[str, str, tuple[tuple[str, str], ...]]
"""(name, unit, labels) of a sample: what its per-series checks depend on."""


class CheckedSeries:
    """Series specs that passed the per-series checks under one set of limits.

    An agent sends the same few hundred series in every batch; remembering
    which passed lets a batch skip the name, unit and label checks of all but
    new series. Bounded: cleared when full.
    """

    def __init__(self, max_entries: int = 50_000) -> None:
        self.specs: set[SeriesSpec] = set()
        # The same for the dictionaries of columnar batches, entry by entry.
        self.names: set[str] = set()
        self.units: set[str] = set()
        self.label_sets: set[Labels] = set()
        self.max_entries = max_entries

    def add(self, new: set[SeriesSpec]) -> None:
        if len(self.specs) + len(new) > self.max_entries:
            self.specs.clear()
        self.specs |= new

    def add_entries(self, names: set[str], units: set[str], label_sets: set[Labels]) -> None:
        held = len(self.names) + len(self.units) + len(self.label_sets)
        if held + len(names) + len(units) + len(label_sets) > self.max_entries:
            self.names.clear()
            self.units.clear()
            self.label_sets.clear()
        self.names |= names
        self.units |= units
        self.label_sets |= label_sets


@dataclass(frozen=True, slots=True)
class Limits:
    """What one batch may hold. Defaults are the documented ones."""

    max_samples: int = 10_000
    max_endpoints: int = 10_000
    max_gaps: int = 1_000
    max_batch_bytes: int = 4 * 1024 * 1024
    max_name_len: int = 200
    max_labels: int = 32
    max_label_key_len: int = 100
    max_label_value_len: int = 256
    max_unit_len: int = 32
    # Text limits match the store's columns (PostgreSQL enforces them).
    max_id_len: int = 128
    max_hostname_len: int = 255
    max_version_len: int = 64
    max_boot_id_len: int = 64
    max_route_len: int = 500
    max_method_len: int = 16
    max_source_len: int = 32
    max_last_error_len: int = 4096
    max_reason_len: int = 64
    max_future_s: float = 600.0
    retention_s: float = 30 * DAY_S


@dataclass(frozen=True, slots=True)
class Caller:
    """What the service knows about the sender of a batch, and when it arrived."""

    token_dealer_id: str
    # Whether the batch's dealer_id is a registered dealer.
    dealer_known: bool
    encoded_bytes: int
    now_ms: int


class _Refused(Exception):
    def __init__(self, code: grpc.StatusCode, field: str, message: str) -> None:
        super().__init__(message)
        self.rejection = Rejection(code, field, message)


def _invalid(field: str, message: str) -> _Refused:
    return _Refused(grpc.StatusCode.INVALID_ARGUMENT, field, f"{field}: {message}")


def validate_batch(
    batch: MetricBatch,
    caller: Caller,
    limits: Limits,
    checked: CheckedSeries | None = None,
    row_samples: int | None = None,
) -> Rejection | None:
    """The first problem found in the batch, or None when it may be written.

    ``checked`` remembers series that passed before (same limits only).
    ``row_samples``: how many of the samples came in the row form (all when
    None); the others came in ``sample_columns`` and are named as such.
    """
    try:
        _check_dealer(batch, caller)
        _check_size(batch, caller, limits)
        _check_identity(batch, limits)
        window = _TimeWindow.around(caller.now_ms, limits)
        window.check_not_future("created_unix_ms", batch.created_ms)
        if isinstance(batch.samples, SampleTable):
            plainly_valid = _table_plainly_valid(batch.samples, window, limits, checked)
        else:
            plainly_valid = _samples_plainly_valid(batch.samples, window, limits, checked)
        if not plainly_valid:
            # Something is wrong: find the first problem, in sample order.
            fields = _SampleFields(len(batch.samples) if row_samples is None else row_samples)
            _check_samples(batch.samples, window, limits, fields)
        _check_endpoints(batch.endpoints, window, limits)
        _check_gaps(batch.gaps, window, limits)
        _check_counters(batch, limits)
    except _Refused as refused:
        return refused.rejection
    return None


def validate_agent(agent: AgentInfo, limits: Limits) -> Rejection | None:
    """What an agent says about itself in Hello, by the same rules as its batches."""
    try:
        _check_text("agent_id", agent.agent_id, limits.max_id_len, required=True)
        _check_text("boot_id", agent.boot_id, limits.max_boot_id_len)
        _check_text("hostname", agent.hostname, limits.max_hostname_len)
        _check_text("agent_version", agent.version, limits.max_version_len)
    except _Refused as refused:
        return refused.rejection
    return None


def _check_dealer(batch: MetricBatch, caller: Caller) -> None:
    if not batch.dealer_id:
        raise _invalid("dealer_id", "must not be empty")
    if not caller.dealer_known:
        raise _invalid("dealer_id", f"unknown dealer {batch.dealer_id!r}")
    if batch.dealer_id != caller.token_dealer_id:
        raise _Refused(
            grpc.StatusCode.PERMISSION_DENIED,
            "dealer_id",
            f"dealer_id: {batch.dealer_id!r} is not the dealer of this token",
        )


def _check_size(batch: MetricBatch, caller: Caller, limits: Limits) -> None:
    if caller.encoded_bytes > limits.max_batch_bytes:
        raise _invalid(
            "batch",
            f"{caller.encoded_bytes} bytes encoded; at most {limits.max_batch_bytes} allowed",
        )
    for what, items, most in (
        ("samples", batch.samples, limits.max_samples),
        ("endpoints", batch.endpoints, limits.max_endpoints),
        ("gaps", batch.gaps, limits.max_gaps),
    ):
        if len(items) > most:
            raise _invalid("batch", f"{len(items)} {what}; at most {most} allowed")


def _check_identity(batch: MetricBatch, limits: Limits) -> None:
    _check_text("agent_id", batch.agent_id, limits.max_id_len, required=True)
    if batch.seq == 0:
        raise _invalid("seq", "must be at least 1")
    _check_int64("seq", batch.seq)
    _check_text("boot_id", batch.boot_id, limits.max_boot_id_len)
    _check_text("hostname", batch.hostname, limits.max_hostname_len)
    _check_text("agent_version", batch.agent_version, limits.max_version_len)


@dataclass(frozen=True, slots=True)
class _TimeWindow:
    """Which instants a batch may carry: within the retention, not far in the future."""

    now_ms: int
    max_future_s: float
    retention_s: float

    @classmethod
    def around(cls, now_ms: int, limits: Limits) -> _TimeWindow:
        return cls(now_ms, limits.max_future_s, limits.retention_s)

    def check_recent(self, field: str, time_ms: int) -> None:
        """A measurement time: not older than the retention, not far in the future."""
        self.check_not_future(field, time_ms)
        age_s = (self.now_ms - time_ms) / 1000
        if age_s > self.retention_s:
            raise _invalid(
                field,
                f"{time_ms} is {age_s / DAY_S:.1f} days old; "
                f"the retention is {self.retention_s / DAY_S:g} days",
            )

    def check_not_future(self, field: str, time_ms: int) -> None:
        """Any time the store keeps: after 1970, not far in the future."""
        if time_ms < 0:
            raise _invalid(field, f"{time_ms} is before 1970")
        ahead_s = (time_ms - self.now_ms) / 1000
        if ahead_s > self.max_future_s:
            raise _invalid(
                field,
                f"{time_ms} is {ahead_s:.0f} s in the future; "
                f"at most {self.max_future_s:g} s allowed",
            )


# Columns of Sample (name, value, unit, time_ms, labels) by position.
_SPEC = itemgetter(0, 2, 4)
_POINT = itemgetter(0, 4, 3)
_TIME = itemgetter(3)
_VALUE = itemgetter(1)


@dataclass(frozen=True, slots=True)
class _SampleFields:
    """The wire name of a sample's field: ``samples[i].value`` for the row form,
    ``sample_columns.values[j]`` for the samples that came in columns."""

    row_samples: int

    def of(self, index: int, part: str) -> str:
        if index < self.row_samples:
            return f"samples[{index}].{part}" if part else f"samples[{index}]"
        column = index - self.row_samples
        return f"sample_columns.{_COLUMN_OF.get(part, 'values')}[{column}]"


# Which column holds each part of a columnar sample (its own index column for
# the parts sent once in a dictionary).
_COLUMN_OF = {
    "name": "name_index",
    "value": "values",
    "unit": "unit_index",
    "time_unix_ms": "time_unix_ms",
    "labels": "labels_index",
}


def _samples_plainly_valid(
    samples: Sequence[Sample], window: _TimeWindow, limits: Limits, checked: CheckedSeries | None
) -> bool:
    """True when every sample is valid, checked column-wise in bulk.

    False means "look closer": :func:`_check_samples` then names the first
    offending sample. A few bulk checks are conservative (a sum that
    overflows), so False does not prove a problem.
    """
    if not samples:
        return True
    known = checked.specs if checked is not None else set()
    # Samples are tuples: itemgetter columns are built in C, no Python per sample.
    new = set(map(_SPEC, samples)) - known
    for name, unit, labels in new:
        try:
            _check_name("name", name, limits)
            _check_text("unit", unit, limits.max_unit_len)
            _check_labels("labels", labels, limits)
        except _Refused:
            return False
    times = list(map(_TIME, samples))
    try:
        # The window checks are monotonic in time: the extremes decide.
        window.check_recent("time_unix_ms", min(times))
        window.check_recent("time_unix_ms", max(times))
    except _Refused:
        return False
    # NaN or an infinity anywhere makes the sum NaN or infinite.
    if not math.isfinite(sum(map(_VALUE, samples))):
        return False
    if len(set(map(_POINT, samples))) != len(samples):
        return False
    if checked is not None and new:
        checked.add(new)
    return True


def _table_plainly_valid(
    table: SampleTable, window: _TimeWindow, limits: Limits, checked: CheckedSeries | None
) -> bool:
    """:func:`_samples_plainly_valid` for a columnar batch, column by column.

    The name, unit and label checks run once per dictionary entry, and only
    for entries not seen before; everything per sample is C-level.
    """
    if not table:
        return True
    if not table.has_distinct_dictionaries():
        return False  # index pairs would not identify series: look closer
    memory = checked if checked is not None else CheckedSeries()
    names = set(table.names) - memory.names
    units = set(table.units) - memory.units
    label_sets = set(table.label_sets) - memory.label_sets
    try:
        for name in names:
            _check_name("name", name, limits)
        for unit in units:
            _check_text("unit", unit, limits.max_unit_len)
        for labels in label_sets:
            _check_labels("labels", labels, limits)
        window.check_recent("time_unix_ms", min(table.times))
        window.check_recent("time_unix_ms", max(table.times))
    except _Refused:
        return False
    if not math.isfinite(sum(table.values)):
        return False
    points = zip(table.name_index, table.labels_index, table.times, strict=True)
    if len(set(points)) != len(table):
        return False
    if checked is not None:
        checked.add_entries(names, units, label_sets)
    return True


def _check_samples(
    samples: Iterable[Sample], window: _TimeWindow, limits: Limits, fields: _SampleFields
) -> None:
    first_seen: dict[tuple[str, tuple[tuple[str, str], ...], int], int] = {}
    for index, sample in enumerate(samples):
        _check_name(fields.of(index, "name"), sample.name, limits)
        if not math.isfinite(sample.value):
            raise _invalid(
                fields.of(index, "value"), f"must be a finite number, got {sample.value}"
            )
        _check_text(fields.of(index, "unit"), sample.unit, limits.max_unit_len)
        window.check_recent(fields.of(index, "time_unix_ms"), sample.time_ms)
        _check_labels(fields.of(index, "labels"), sample.labels, limits)
        key = (sample.name, sample.labels, sample.time_ms)
        earlier = first_seen.setdefault(key, index)
        if earlier != index:
            raise _invalid(
                fields.of(index, ""), f"same series and time as {fields.of(earlier, '')}"
            )


def _check_name(field: str, name: str, limits: Limits) -> None:
    if not name:
        raise _invalid(field, "must not be empty")
    if len(name) > limits.max_name_len:
        raise _invalid(field, f"{len(name)} characters; at most {limits.max_name_len} allowed")
    if not NAME_RE.fullmatch(name):
        raise _invalid(field, f"{name!r} does not match {NAME_RE.pattern}")


def _check_labels(field: str, labels: tuple[tuple[str, str], ...], limits: Limits) -> None:
    if len(labels) > limits.max_labels:
        raise _invalid(field, f"{len(labels)} labels; at most {limits.max_labels} allowed")
    for key, value in labels:
        if len(key) > limits.max_label_key_len or not LABEL_KEY_RE.fullmatch(key):
            raise _invalid(
                f"{field}[{key!r}]",
                f"label key must match {LABEL_KEY_RE.pattern} "
                f"with at most {limits.max_label_key_len} characters",
            )
        _check_text(f"{field}[{key!r}]", value, limits.max_label_value_len)


def _check_endpoints(
    endpoints: Iterable[EndpointStat], window: _TimeWindow, limits: Limits
) -> None:
    for index, stat in enumerate(endpoints):
        where = f"endpoints[{index}]"
        _check_text(f"{where}.route", stat.route, limits.max_route_len, required=True)
        _check_text(f"{where}.method", stat.method, limits.max_method_len, required=True)
        _check_text(
            f"{where}.last_error", stat.last_error, limits.max_last_error_len, multiline=True
        )
        _check_text(f"{where}.source", stat.source, limits.max_source_len)
        window.check_recent(f"{where}.start_unix_ms", stat.start_ms)
        window.check_recent(f"{where}.end_unix_ms", stat.end_ms)
        if stat.last_error_ms:
            window.check_not_future(f"{where}.last_error_unix_ms", stat.last_error_ms)
        if stat.end_ms < stat.start_ms:
            raise _invalid(f"{where}.end_unix_ms", "must not be before start_unix_ms")
        _check_counts(where, stat)
        _check_durations(where, stat)
        if stat.latency is not None:
            _check_sketch(f"{where}.latency", stat.latency)


def _check_counts(where: str, stat: EndpointStat) -> None:
    for name in ("count", "errors", "client_errors"):
        _check_int64(f"{where}.{name}", getattr(stat, name))
    if stat.errors > stat.count:
        raise _invalid(f"{where}.errors", f"{stat.errors} errors exceed count {stat.count}")
    if stat.client_errors > stat.count:
        raise _invalid(
            f"{where}.client_errors",
            f"{stat.client_errors} client errors exceed count {stat.count}",
        )
    for status, count in stat.status_counts:
        if not 100 <= status <= 599:
            raise _invalid(f"{where}.status_counts", f"{status} is not an HTTP status code")
        _check_int64(f"{where}.status_counts[{status}]", count)


def _check_durations(where: str, stat: EndpointStat) -> None:
    for name in ("duration_sum_ms", "duration_min_ms", "duration_max_ms"):
        value: float = getattr(stat, name)
        if not math.isfinite(value) or value < 0:
            raise _invalid(f"{where}.{name}", f"must be a finite number >= 0, got {value}")
    if stat.duration_min_ms > stat.duration_max_ms:
        raise _invalid(f"{where}.duration_min_ms", "must not exceed duration_max_ms")


def _check_sketch(where: str, sketch: LatencySketch) -> None:
    if not (math.isfinite(sketch.relative_accuracy) and 0 < sketch.relative_accuracy < 1):
        raise _invalid(
            f"{where}.relative_accuracy", f"must be in (0, 1), got {sketch.relative_accuracy}"
        )
    _check_int64(f"{where}.zero_count", sketch.zero_count)
    for index, count in enumerate(sketch.bin_counts):
        _check_int64(f"{where}.bin_counts[{index}]", count)


def _check_gaps(gaps: Iterable[Gap], window: _TimeWindow, limits: Limits) -> None:
    for index, gap in enumerate(gaps):
        where = f"gaps[{index}]"
        for name in ("first_seq", "last_seq", "batches", "samples"):
            _check_int64(f"{where}.{name}", getattr(gap, name))
        if gap.last_seq < gap.first_seq:
            raise _invalid(f"{where}.last_seq", "must not be below first_seq")
        if gap.to_ms < gap.from_ms:
            raise _invalid(f"{where}.to_unix_ms", "must not be before from_unix_ms")
        _check_text(f"{where}.reason", gap.reason, limits.max_reason_len, required=True)
        window.check_not_future(f"{where}.from_unix_ms", gap.from_ms)
        window.check_not_future(f"{where}.to_unix_ms", gap.to_ms)


def _check_counters(batch: MetricBatch, limits: Limits) -> None:
    counters = batch.counters
    _check_int64("counters.generated_samples", counters.generated_samples)
    _check_int64("counters.spool_bytes", counters.spool_bytes)
    _check_int64("counters.spool_batches", counters.spool_batches)
    for reason, count in counters.dropped_samples:
        _check_text(
            f"counters.dropped_samples[{reason!r}]", reason, limits.max_reason_len, required=True
        )
        _check_int64(f"counters.dropped_samples[{reason!r}]", count)


def _check_text(
    field: str, value: str, max_len: int, *, required: bool = False, multiline: bool = False
) -> None:
    if required and not value:
        raise _invalid(field, "must not be empty")
    if len(value) > max_len:
        raise _invalid(field, f"{len(value)} characters; at most {max_len} allowed")
    # PostgreSQL text cannot hold NUL; other control characters only garble logs
    # and reports, except the line breaks of an error message.
    forbidden = _NUL_RE if multiline else _CONTROL_RE
    if forbidden.search(value):
        raise _invalid(field, "must not contain control characters")


def _check_int64(field: str, value: int) -> None:
    if not 0 <= value <= MAX_INT64:
        raise _invalid(field, f"{value} is outside 0..{MAX_INT64}")
