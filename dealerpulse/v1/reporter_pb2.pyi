import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TimeRange(_message.Message):
    __slots__ = ("name", "start", "end", "start_unix_ms", "end_unix_ms")
    NAME_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    START_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    END_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    name: str
    start: _timestamp_pb2.Timestamp
    end: _timestamp_pb2.Timestamp
    start_unix_ms: int
    end_unix_ms: int
    def __init__(self, name: _Optional[str] = ..., start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., start_unix_ms: _Optional[int] = ..., end_unix_ms: _Optional[int] = ...) -> None: ...

class Point(_message.Message):
    __slots__ = ("time", "value")
    TIME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    time: _timestamp_pb2.Timestamp
    value: float
    def __init__(self, time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., value: _Optional[float] = ...) -> None: ...

class Series(_message.Message):
    __slots__ = ("name", "unit", "step", "points")
    NAME_FIELD_NUMBER: _ClassVar[int]
    UNIT_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    name: str
    unit: str
    step: _duration_pb2.Duration
    points: _containers.RepeatedCompositeFieldContainer[Point]
    def __init__(self, name: _Optional[str] = ..., unit: _Optional[str] = ..., step: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., points: _Optional[_Iterable[_Union[Point, _Mapping]]] = ...) -> None: ...

class EndpointAnalytics(_message.Message):
    __slots__ = ("route", "method", "requests", "errors", "client_errors", "error_rate_percent", "success_rate_percent", "calls_per_hour", "avg_ms", "peak_ms", "p50_ms", "p95_ms", "p99_ms", "last_error", "last_error_at", "response_time", "error_rate", "throughput")
    ROUTE_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ERRORS_FIELD_NUMBER: _ClassVar[int]
    ERROR_RATE_PERCENT_FIELD_NUMBER: _ClassVar[int]
    SUCCESS_RATE_PERCENT_FIELD_NUMBER: _ClassVar[int]
    CALLS_PER_HOUR_FIELD_NUMBER: _ClassVar[int]
    AVG_MS_FIELD_NUMBER: _ClassVar[int]
    PEAK_MS_FIELD_NUMBER: _ClassVar[int]
    P50_MS_FIELD_NUMBER: _ClassVar[int]
    P95_MS_FIELD_NUMBER: _ClassVar[int]
    P99_MS_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_AT_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_TIME_FIELD_NUMBER: _ClassVar[int]
    ERROR_RATE_FIELD_NUMBER: _ClassVar[int]
    THROUGHPUT_FIELD_NUMBER: _ClassVar[int]
    route: str
    method: str
    requests: int
    errors: int
    client_errors: int
    error_rate_percent: float
    success_rate_percent: float
    calls_per_hour: float
    avg_ms: float
    peak_ms: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    last_error: str
    last_error_at: _timestamp_pb2.Timestamp
    response_time: Series
    error_rate: Series
    throughput: Series
    def __init__(self, route: _Optional[str] = ..., method: _Optional[str] = ..., requests: _Optional[int] = ..., errors: _Optional[int] = ..., client_errors: _Optional[int] = ..., error_rate_percent: _Optional[float] = ..., success_rate_percent: _Optional[float] = ..., calls_per_hour: _Optional[float] = ..., avg_ms: _Optional[float] = ..., peak_ms: _Optional[float] = ..., p50_ms: _Optional[float] = ..., p95_ms: _Optional[float] = ..., p99_ms: _Optional[float] = ..., last_error: _Optional[str] = ..., last_error_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., response_time: _Optional[_Union[Series, _Mapping]] = ..., error_rate: _Optional[_Union[Series, _Mapping]] = ..., throughput: _Optional[_Union[Series, _Mapping]] = ...) -> None: ...

class ResourceUsage(_message.Message):
    __slots__ = ("name", "unit", "labels", "avg", "peak", "latest", "series")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    UNIT_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    AVG_FIELD_NUMBER: _ClassVar[int]
    PEAK_FIELD_NUMBER: _ClassVar[int]
    LATEST_FIELD_NUMBER: _ClassVar[int]
    SERIES_FIELD_NUMBER: _ClassVar[int]
    name: str
    unit: str
    labels: _containers.ScalarMap[str, str]
    avg: float
    peak: float
    latest: float
    series: Series
    def __init__(self, name: _Optional[str] = ..., unit: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., avg: _Optional[float] = ..., peak: _Optional[float] = ..., latest: _Optional[float] = ..., series: _Optional[_Union[Series, _Mapping]] = ...) -> None: ...

class HostResource(_message.Message):
    __slots__ = ("name", "usages")
    NAME_FIELD_NUMBER: _ClassVar[int]
    USAGES_FIELD_NUMBER: _ClassVar[int]
    name: str
    usages: _containers.RepeatedCompositeFieldContainer[ResourceUsage]
    def __init__(self, name: _Optional[str] = ..., usages: _Optional[_Iterable[_Union[ResourceUsage, _Mapping]]] = ...) -> None: ...

class AnalyticsSummary(_message.Message):
    __slots__ = ("requests", "errors", "error_rate_percent", "avg_ms", "peak_ms", "p50_ms", "p95_ms", "p99_ms", "throughput_per_min", "uptime_percent")
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    ERROR_RATE_PERCENT_FIELD_NUMBER: _ClassVar[int]
    AVG_MS_FIELD_NUMBER: _ClassVar[int]
    PEAK_MS_FIELD_NUMBER: _ClassVar[int]
    P50_MS_FIELD_NUMBER: _ClassVar[int]
    P95_MS_FIELD_NUMBER: _ClassVar[int]
    P99_MS_FIELD_NUMBER: _ClassVar[int]
    THROUGHPUT_PER_MIN_FIELD_NUMBER: _ClassVar[int]
    UPTIME_PERCENT_FIELD_NUMBER: _ClassVar[int]
    requests: int
    errors: int
    error_rate_percent: float
    avg_ms: float
    peak_ms: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    throughput_per_min: float
    uptime_percent: float
    def __init__(self, requests: _Optional[int] = ..., errors: _Optional[int] = ..., error_rate_percent: _Optional[float] = ..., avg_ms: _Optional[float] = ..., peak_ms: _Optional[float] = ..., p50_ms: _Optional[float] = ..., p95_ms: _Optional[float] = ..., p99_ms: _Optional[float] = ..., throughput_per_min: _Optional[float] = ..., uptime_percent: _Optional[float] = ...) -> None: ...

class AnalyticsData(_message.Message):
    __slots__ = ("dealer_id", "range", "step", "summary", "endpoints", "response_time", "response_time_p95", "error_rate", "throughput", "resources", "host")
    DEALER_ID_FIELD_NUMBER: _ClassVar[int]
    RANGE_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    ENDPOINTS_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_TIME_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_TIME_P95_FIELD_NUMBER: _ClassVar[int]
    ERROR_RATE_FIELD_NUMBER: _ClassVar[int]
    THROUGHPUT_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    dealer_id: str
    range: TimeRange
    step: _duration_pb2.Duration
    summary: AnalyticsSummary
    endpoints: _containers.RepeatedCompositeFieldContainer[EndpointAnalytics]
    response_time: Series
    response_time_p95: Series
    error_rate: Series
    throughput: Series
    resources: _containers.RepeatedCompositeFieldContainer[ResourceUsage]
    host: _containers.RepeatedCompositeFieldContainer[HostResource]
    def __init__(self, dealer_id: _Optional[str] = ..., range: _Optional[_Union[TimeRange, _Mapping]] = ..., step: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., summary: _Optional[_Union[AnalyticsSummary, _Mapping]] = ..., endpoints: _Optional[_Iterable[_Union[EndpointAnalytics, _Mapping]]] = ..., response_time: _Optional[_Union[Series, _Mapping]] = ..., response_time_p95: _Optional[_Union[Series, _Mapping]] = ..., error_rate: _Optional[_Union[Series, _Mapping]] = ..., throughput: _Optional[_Union[Series, _Mapping]] = ..., resources: _Optional[_Iterable[_Union[ResourceUsage, _Mapping]]] = ..., host: _Optional[_Iterable[_Union[HostResource, _Mapping]]] = ...) -> None: ...

class Trend(_message.Message):
    __slots__ = ("metric", "direction", "method", "n", "p_value", "slope_per_hour", "change_percent")
    METRIC_FIELD_NUMBER: _ClassVar[int]
    DIRECTION_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    N_FIELD_NUMBER: _ClassVar[int]
    P_VALUE_FIELD_NUMBER: _ClassVar[int]
    SLOPE_PER_HOUR_FIELD_NUMBER: _ClassVar[int]
    CHANGE_PERCENT_FIELD_NUMBER: _ClassVar[int]
    metric: str
    direction: str
    method: str
    n: int
    p_value: float
    slope_per_hour: float
    change_percent: float
    def __init__(self, metric: _Optional[str] = ..., direction: _Optional[str] = ..., method: _Optional[str] = ..., n: _Optional[int] = ..., p_value: _Optional[float] = ..., slope_per_hour: _Optional[float] = ..., change_percent: _Optional[float] = ...) -> None: ...

class Evidence(_message.Message):
    __slots__ = ("number", "text")
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    number: float
    text: str
    def __init__(self, number: _Optional[float] = ..., text: _Optional[str] = ...) -> None: ...

class Recommendation(_message.Message):
    __slots__ = ("type", "title", "description", "impact", "effort", "priority", "dealer_id", "range", "evidence", "endpoint")
    class EvidenceEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: Evidence
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[Evidence, _Mapping]] = ...) -> None: ...
    TYPE_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    IMPACT_FIELD_NUMBER: _ClassVar[int]
    EFFORT_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    DEALER_ID_FIELD_NUMBER: _ClassVar[int]
    RANGE_FIELD_NUMBER: _ClassVar[int]
    EVIDENCE_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    type: str
    title: str
    description: str
    impact: str
    effort: str
    priority: int
    dealer_id: str
    range: TimeRange
    evidence: _containers.MessageMap[str, Evidence]
    endpoint: str
    def __init__(self, type: _Optional[str] = ..., title: _Optional[str] = ..., description: _Optional[str] = ..., impact: _Optional[str] = ..., effort: _Optional[str] = ..., priority: _Optional[int] = ..., dealer_id: _Optional[str] = ..., range: _Optional[_Union[TimeRange, _Mapping]] = ..., evidence: _Optional[_Mapping[str, Evidence]] = ..., endpoint: _Optional[str] = ...) -> None: ...

class Analytics(_message.Message):
    __slots__ = ("data", "trends", "recommendations")
    DATA_FIELD_NUMBER: _ClassVar[int]
    TRENDS_FIELD_NUMBER: _ClassVar[int]
    RECOMMENDATIONS_FIELD_NUMBER: _ClassVar[int]
    data: AnalyticsData
    trends: _containers.RepeatedCompositeFieldContainer[Trend]
    recommendations: _containers.RepeatedCompositeFieldContainer[Recommendation]
    def __init__(self, data: _Optional[_Union[AnalyticsData, _Mapping]] = ..., trends: _Optional[_Iterable[_Union[Trend, _Mapping]]] = ..., recommendations: _Optional[_Iterable[_Union[Recommendation, _Mapping]]] = ...) -> None: ...

class EndpointHealth(_message.Message):
    __slots__ = ("route", "method", "source", "requests", "calls_per_hour", "errors", "client_errors", "success_rate_percent", "avg_ms", "p95_ms", "last_error", "last_error_at")
    ROUTE_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    CALLS_PER_HOUR_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ERRORS_FIELD_NUMBER: _ClassVar[int]
    SUCCESS_RATE_PERCENT_FIELD_NUMBER: _ClassVar[int]
    AVG_MS_FIELD_NUMBER: _ClassVar[int]
    P95_MS_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_AT_FIELD_NUMBER: _ClassVar[int]
    route: str
    method: str
    source: str
    requests: int
    calls_per_hour: float
    errors: int
    client_errors: int
    success_rate_percent: float
    avg_ms: float
    p95_ms: float
    last_error: str
    last_error_at: _timestamp_pb2.Timestamp
    def __init__(self, route: _Optional[str] = ..., method: _Optional[str] = ..., source: _Optional[str] = ..., requests: _Optional[int] = ..., calls_per_hour: _Optional[float] = ..., errors: _Optional[int] = ..., client_errors: _Optional[int] = ..., success_rate_percent: _Optional[float] = ..., avg_ms: _Optional[float] = ..., p95_ms: _Optional[float] = ..., last_error: _Optional[str] = ..., last_error_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class DealerHealth(_message.Message):
    __slots__ = ("dealer_id", "start", "end", "requests", "errors", "throughput_per_min", "error_rate_percent", "avg_ms", "p50_ms", "p95_ms", "p99_ms", "uptime_percent", "uptime_source", "cpu_percent", "memory_percent", "status", "resource_status", "reasons", "endpoints")
    DEALER_ID_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    THROUGHPUT_PER_MIN_FIELD_NUMBER: _ClassVar[int]
    ERROR_RATE_PERCENT_FIELD_NUMBER: _ClassVar[int]
    AVG_MS_FIELD_NUMBER: _ClassVar[int]
    P50_MS_FIELD_NUMBER: _ClassVar[int]
    P95_MS_FIELD_NUMBER: _ClassVar[int]
    P99_MS_FIELD_NUMBER: _ClassVar[int]
    UPTIME_PERCENT_FIELD_NUMBER: _ClassVar[int]
    UPTIME_SOURCE_FIELD_NUMBER: _ClassVar[int]
    CPU_PERCENT_FIELD_NUMBER: _ClassVar[int]
    MEMORY_PERCENT_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_STATUS_FIELD_NUMBER: _ClassVar[int]
    REASONS_FIELD_NUMBER: _ClassVar[int]
    ENDPOINTS_FIELD_NUMBER: _ClassVar[int]
    dealer_id: str
    start: _timestamp_pb2.Timestamp
    end: _timestamp_pb2.Timestamp
    requests: int
    errors: int
    throughput_per_min: float
    error_rate_percent: float
    avg_ms: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    uptime_percent: float
    uptime_source: str
    cpu_percent: float
    memory_percent: float
    status: str
    resource_status: str
    reasons: _containers.RepeatedScalarFieldContainer[str]
    endpoints: _containers.RepeatedCompositeFieldContainer[EndpointHealth]
    def __init__(self, dealer_id: _Optional[str] = ..., start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., requests: _Optional[int] = ..., errors: _Optional[int] = ..., throughput_per_min: _Optional[float] = ..., error_rate_percent: _Optional[float] = ..., avg_ms: _Optional[float] = ..., p50_ms: _Optional[float] = ..., p95_ms: _Optional[float] = ..., p99_ms: _Optional[float] = ..., uptime_percent: _Optional[float] = ..., uptime_source: _Optional[str] = ..., cpu_percent: _Optional[float] = ..., memory_percent: _Optional[float] = ..., status: _Optional[str] = ..., resource_status: _Optional[str] = ..., reasons: _Optional[_Iterable[str]] = ..., endpoints: _Optional[_Iterable[_Union[EndpointHealth, _Mapping]]] = ...) -> None: ...

class ResourceSnapshot(_message.Message):
    __slots__ = ("cpu_percent", "memory_percent", "disk_percent", "network_percent", "as_of")
    CPU_PERCENT_FIELD_NUMBER: _ClassVar[int]
    MEMORY_PERCENT_FIELD_NUMBER: _ClassVar[int]
    DISK_PERCENT_FIELD_NUMBER: _ClassVar[int]
    NETWORK_PERCENT_FIELD_NUMBER: _ClassVar[int]
    AS_OF_FIELD_NUMBER: _ClassVar[int]
    cpu_percent: float
    memory_percent: float
    disk_percent: float
    network_percent: float
    as_of: _timestamp_pb2.Timestamp
    def __init__(self, cpu_percent: _Optional[float] = ..., memory_percent: _Optional[float] = ..., disk_percent: _Optional[float] = ..., network_percent: _Optional[float] = ..., as_of: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Realtime(_message.Message):
    __slots__ = ("health", "resources", "as_of")
    HEALTH_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    AS_OF_FIELD_NUMBER: _ClassVar[int]
    health: DealerHealth
    resources: ResourceSnapshot
    as_of: _timestamp_pb2.Timestamp
    def __init__(self, health: _Optional[_Union[DealerHealth, _Mapping]] = ..., resources: _Optional[_Union[ResourceSnapshot, _Mapping]] = ..., as_of: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Report(_message.Message):
    __slots__ = ("report_id", "dealer_id", "period", "range", "format", "created_at", "title", "body")
    REPORT_ID_FIELD_NUMBER: _ClassVar[int]
    DEALER_ID_FIELD_NUMBER: _ClassVar[int]
    PERIOD_FIELD_NUMBER: _ClassVar[int]
    RANGE_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    report_id: int
    dealer_id: str
    period: str
    range: TimeRange
    format: str
    created_at: _timestamp_pb2.Timestamp
    title: str
    body: bytes
    def __init__(self, report_id: _Optional[int] = ..., dealer_id: _Optional[str] = ..., period: _Optional[str] = ..., range: _Optional[_Union[TimeRange, _Mapping]] = ..., format: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., title: _Optional[str] = ..., body: _Optional[bytes] = ...) -> None: ...

class GetRealtimeRequest(_message.Message):
    __slots__ = ("dealer_id",)
    DEALER_ID_FIELD_NUMBER: _ClassVar[int]
    dealer_id: str
    def __init__(self, dealer_id: _Optional[str] = ...) -> None: ...

class GetAnalyticsRequest(_message.Message):
    __slots__ = ("dealer_id", "time_range")
    DEALER_ID_FIELD_NUMBER: _ClassVar[int]
    TIME_RANGE_FIELD_NUMBER: _ClassVar[int]
    dealer_id: str
    time_range: TimeRange
    def __init__(self, dealer_id: _Optional[str] = ..., time_range: _Optional[_Union[TimeRange, _Mapping]] = ...) -> None: ...

class ListRecommendationsRequest(_message.Message):
    __slots__ = ("dealer_id", "time_range")
    DEALER_ID_FIELD_NUMBER: _ClassVar[int]
    TIME_RANGE_FIELD_NUMBER: _ClassVar[int]
    dealer_id: str
    time_range: TimeRange
    def __init__(self, dealer_id: _Optional[str] = ..., time_range: _Optional[_Union[TimeRange, _Mapping]] = ...) -> None: ...

class ListRecommendationsResponse(_message.Message):
    __slots__ = ("recommendations",)
    RECOMMENDATIONS_FIELD_NUMBER: _ClassVar[int]
    recommendations: _containers.RepeatedCompositeFieldContainer[Recommendation]
    def __init__(self, recommendations: _Optional[_Iterable[_Union[Recommendation, _Mapping]]] = ...) -> None: ...

class GenerateReportRequest(_message.Message):
    __slots__ = ("dealer_id", "time_range", "format")
    DEALER_ID_FIELD_NUMBER: _ClassVar[int]
    TIME_RANGE_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    dealer_id: str
    time_range: TimeRange
    format: str
    def __init__(self, dealer_id: _Optional[str] = ..., time_range: _Optional[_Union[TimeRange, _Mapping]] = ..., format: _Optional[str] = ...) -> None: ...

class ListReportsRequest(_message.Message):
    __slots__ = ("dealer_id", "limit")
    DEALER_ID_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    dealer_id: str
    limit: int
    def __init__(self, dealer_id: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class ListReportsResponse(_message.Message):
    __slots__ = ("reports",)
    REPORTS_FIELD_NUMBER: _ClassVar[int]
    reports: _containers.RepeatedCompositeFieldContainer[Report]
    def __init__(self, reports: _Optional[_Iterable[_Union[Report, _Mapping]]] = ...) -> None: ...

class GetReportRequest(_message.Message):
    __slots__ = ("report_id", "format")
    REPORT_ID_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    report_id: int
    format: str
    def __init__(self, report_id: _Optional[int] = ..., format: _Optional[str] = ...) -> None: ...
