"""reporter.codec: model <-> protobuf <-> JSON round trips, and request ranges."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.health import DealerHealth, EndpointHealth, Status
from dealerpulse.v1 import reporter_pb2 as pb
from reporter import codec
from reporter.model import (
    Analytics,
    AnalyticsData,
    Direction,
    Effort,
    EndpointAnalytics,
    Impact,
    Point,
    Realtime,
    Recommendation,
    ReportFormat,
    ReportRecord,
    ResourceSnapshot,
    ResourceUsage,
    Series,
    Summary,
    TimeRange,
    Trend,
)

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

# Hypothesis takes naive bounds and attaches the zone itself.
moments = st.datetimes(
    min_value=datetime(2000, 1, 1),  # noqa: DTZ001
    max_value=datetime(2100, 1, 1),  # noqa: DTZ001
    timezones=st.just(UTC),
)
numbers = st.floats(allow_nan=False, allow_infinity=False, width=64)
maybe = st.none() | numbers
text = st.text(max_size=20)
counts = st.integers(0, 2**53)


def _range(start: datetime, days: float) -> TimeRange:
    return TimeRange(start, start + timedelta(days=days))


ranges = st.builds(_range, moments, st.floats(0.001, 399))

endpoint_health = st.builds(
    EndpointHealth,
    route=text,
    method=text,
    source=text,
    requests=counts,
    calls_per_hour=numbers,
    errors=counts,
    client_errors=counts,
    success_rate_percent=numbers,
    avg_ms=maybe,
    p95_ms=maybe,
    last_error=text,
    last_error_at=st.none() | moments,
)
dealer_health = st.builds(
    DealerHealth,
    dealer_id=text,
    start=moments,
    end=moments,
    requests=counts,
    errors=counts,
    throughput_per_min=numbers,
    error_rate_percent=maybe,
    avg_ms=maybe,
    p50_ms=maybe,
    p95_ms=maybe,
    p99_ms=maybe,
    uptime_percent=maybe,
    uptime_source=text,
    cpu_percent=maybe,
    memory_percent=maybe,
    status=st.sampled_from(Status),
    resource_status=st.sampled_from(Status),
    reasons=st.lists(text, max_size=3).map(tuple),
    endpoints=st.lists(endpoint_health, max_size=3).map(tuple),
)
realtimes = st.builds(
    Realtime,
    health=dealer_health,
    resources=st.builds(ResourceSnapshot, maybe, maybe, maybe, maybe, st.none() | moments),
    as_of=moments,
)
recommendations = st.builds(
    Recommendation,
    type=text,
    title=text,
    description=text,
    impact=st.sampled_from(Impact),
    effort=st.sampled_from(Effort),
    priority=st.integers(1, 100),
    dealer_id=st.none() | st.text(min_size=1, max_size=10),
    range=ranges,
    evidence=st.dictionaries(text, numbers | text, max_size=4),
    endpoint=text,
)


@settings(max_examples=60, deadline=None)
@given(realtimes)
def test_realtime_survives_protobuf_and_json(value: Realtime) -> None:
    assert codec.realtime_from_pb(codec.realtime_to_pb(value)) == value
    assert codec.from_json(codec.KIND_REALTIME, codec.to_json(codec.KIND_REALTIME, value)) == value


@settings(max_examples=60, deadline=None)
@given(st.lists(recommendations, max_size=4).map(tuple))
def test_recommendations_survive_protobuf_and_json(values: tuple[Recommendation, ...]) -> None:
    assert codec.recommendations_from_pb(codec.recommendations_to_pb(values)) == values
    kind = codec.KIND_RECOMMENDATIONS
    assert codec.from_json(kind, codec.to_json(kind, values)) == values


def _series(name: str, step: timedelta) -> Series:
    points = (Point(NOW, 1.5), Point(NOW + step, None), Point(NOW + 2 * step, 0.0))
    return Series(name, "ms", step, points)


def _usage(name: str, **labels: str) -> ResourceUsage:
    return ResourceUsage(
        name, "percent", labels, 10.0, 90.0, None, _series(name, timedelta(hours=1))
    )


def test_analytics_survive_protobuf_and_json() -> None:
    step = timedelta(hours=1)
    time_range = TimeRange(NOW - timedelta(days=30), NOW)
    endpoint = EndpointAnalytics(
        "/api/x", "GET", 10, 1, 2, 10.0, 90.0, 0.5, 12.0, 80.0, 10.0, 40.0, None, "HTTP 500",
        NOW, _series("a", step), _series("b", step), _series("c", step),
    )  # fmt: skip
    data = AnalyticsData(
        dealer_id=None,
        range=time_range,
        step=step,
        summary=Summary(10, 1, 10.0, 12.0, 80.0, None, 40.0, None, 0.01, 99.5),
        endpoints=(endpoint,),
        response_time=_series("response_time.avg_ms", step),
        response_time_p95=_series("response_time.p95_ms", step),
        error_rate=_series("error_rate", step),
        throughput=_series("throughput", step),
        resources=(_usage("cpu.percent"), _usage("disk.percent", mount="/data")),
        host={"memory.used_bytes": (_usage("memory.used_bytes", agent="a1"),)},
    )
    trend = Trend("response_time", Direction.DEGRADING, "mann-kendall", 720, 0.01, 0.5, 12.0)
    recommendation = Recommendation(
        "disk_full", "Disk fills", "Soon", Impact.HIGH, Effort.LOW, 1, None, time_range,
        {"days_left": 3.0, "mount": "/data"},
    )  # fmt: skip
    value = Analytics(data, (trend,), (recommendation,))

    assert codec.analytics_from_pb(codec.analytics_to_pb(value)) == value
    assert (
        codec.from_json(codec.KIND_ANALYTICS, codec.to_json(codec.KIND_ANALYTICS, value)) == value
    )


def test_a_report_without_its_body() -> None:
    record = ReportRecord(
        7, "acme", "adhoc", TimeRange(NOW - timedelta(days=1), NOW), ReportFormat.TEXT, NOW, "T",
        b"body",
    )  # fmt: skip
    assert codec.report_from_pb(codec.report_to_pb(record)) == record
    assert codec.report_from_pb(codec.report_to_pb(record, with_body=False)).body == b""


def test_a_bad_cached_value_or_enum_is_a_codec_error() -> None:
    with pytest.raises(codec.CodecError, match="realtime"):
        codec.from_json(codec.KIND_REALTIME, "{not json")
    message = codec.realtime_to_pb(
        Realtime(
            DealerHealth(
                "d", NOW, NOW, 0, 0, 0.0, None, None, None, None, None, None, "", None, None,
                Status.HEALTHY, Status.HEALTHY, (), (),
            ),
            ResourceSnapshot(None, None, None, None, None),
            NOW,
        )
    )  # fmt: skip
    message.health.status = "splendid"
    with pytest.raises(codec.CodecError, match="status: must be one of healthy"):
        codec.realtime_from_pb(message)


@settings(max_examples=100, deadline=None)
@given(ranges)
def test_explicit_ranges_decode_to_what_was_asked(time_range: TimeRange) -> None:
    assert codec.time_range_from_pb(codec.time_range_to_pb(time_range), NOW) == time_range


def test_ranges_in_unix_ms_and_named_ranges() -> None:
    start_ms, end_ms = 1_772_000_000_000, 1_772_003_600_000
    message = pb.TimeRange(start_unix_ms=start_ms, end_unix_ms=end_ms)
    decoded = codec.time_range_from_pb(message, NOW)
    assert decoded.duration == timedelta(hours=1)
    assert codec.time_range_from_pb(pb.TimeRange(name="7d"), NOW) == TimeRange(
        NOW - timedelta(days=7), NOW
    )
    # Without an end: up to now.
    assert codec.time_range_from_pb(pb.TimeRange(start_unix_ms=start_ms), NOW).end == NOW


@pytest.mark.parametrize(
    ("message", "named"),
    [
        (pb.TimeRange(name="soon"), "'soon' is not one of"),
        (pb.TimeRange(name="0d"), "empty"),
        (pb.TimeRange(start_unix_ms=-5), "start_unix_ms must not be negative"),
        (pb.TimeRange(start_unix_ms=5, start=datetime(2026, 1, 1, tzinfo=UTC)), "not both"),
    ],
)
def test_bad_ranges_name_time_range(message: pb.TimeRange, named: str) -> None:
    with pytest.raises(codec.CodecError) as refused:
        codec.time_range_from_pb(message, NOW)
    assert str(refused.value).startswith("timeRange") and named in str(refused.value)


def test_report_formats() -> None:
    assert codec.report_format("") is ReportFormat.HTML
    assert codec.report_format(" JSON ") is ReportFormat.JSON
    assert codec.report_format("", default=None) is None
    with pytest.raises(codec.CodecError, match="format: must be one of html, json, text"):
        codec.report_format("pdf")
