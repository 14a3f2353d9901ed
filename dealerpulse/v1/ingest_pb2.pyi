from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Sample(_message.Message):
    __slots__ = ("name", "value", "unit", "time_unix_ms", "labels")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    UNIT_FIELD_NUMBER: _ClassVar[int]
    TIME_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    name: str
    value: float
    unit: str
    time_unix_ms: int
    labels: _containers.ScalarMap[str, str]
    def __init__(self, name: _Optional[str] = ..., value: _Optional[float] = ..., unit: _Optional[str] = ..., time_unix_ms: _Optional[int] = ..., labels: _Optional[_Mapping[str, str]] = ...) -> None: ...

class LatencySketch(_message.Message):
    __slots__ = ("relative_accuracy", "offset", "bin_counts", "zero_count")
    RELATIVE_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    BIN_COUNTS_FIELD_NUMBER: _ClassVar[int]
    ZERO_COUNT_FIELD_NUMBER: _ClassVar[int]
    relative_accuracy: float
    offset: int
    bin_counts: _containers.RepeatedScalarFieldContainer[int]
    zero_count: int
    def __init__(self, relative_accuracy: _Optional[float] = ..., offset: _Optional[int] = ..., bin_counts: _Optional[_Iterable[int]] = ..., zero_count: _Optional[int] = ...) -> None: ...

class EndpointStats(_message.Message):
    __slots__ = ("route", "method", "start_unix_ms", "end_unix_ms", "count", "errors", "client_errors", "duration_sum_ms", "duration_min_ms", "duration_max_ms", "status_counts", "last_error", "last_error_unix_ms", "latency", "source")
    class StatusCountsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: int
        value: int
        def __init__(self, key: _Optional[int] = ..., value: _Optional[int] = ...) -> None: ...
    ROUTE_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    START_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    END_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ERRORS_FIELD_NUMBER: _ClassVar[int]
    DURATION_SUM_MS_FIELD_NUMBER: _ClassVar[int]
    DURATION_MIN_MS_FIELD_NUMBER: _ClassVar[int]
    DURATION_MAX_MS_FIELD_NUMBER: _ClassVar[int]
    STATUS_COUNTS_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    LATENCY_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    route: str
    method: str
    start_unix_ms: int
    end_unix_ms: int
    count: int
    errors: int
    client_errors: int
    duration_sum_ms: float
    duration_min_ms: float
    duration_max_ms: float
    status_counts: _containers.ScalarMap[int, int]
    last_error: str
    last_error_unix_ms: int
    latency: LatencySketch
    source: str
    def __init__(self, route: _Optional[str] = ..., method: _Optional[str] = ..., start_unix_ms: _Optional[int] = ..., end_unix_ms: _Optional[int] = ..., count: _Optional[int] = ..., errors: _Optional[int] = ..., client_errors: _Optional[int] = ..., duration_sum_ms: _Optional[float] = ..., duration_min_ms: _Optional[float] = ..., duration_max_ms: _Optional[float] = ..., status_counts: _Optional[_Mapping[int, int]] = ..., last_error: _Optional[str] = ..., last_error_unix_ms: _Optional[int] = ..., latency: _Optional[_Union[LatencySketch, _Mapping]] = ..., source: _Optional[str] = ...) -> None: ...

class Gap(_message.Message):
    __slots__ = ("first_seq", "last_seq", "from_unix_ms", "to_unix_ms", "batches", "samples", "reason")
    FIRST_SEQ_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQ_FIELD_NUMBER: _ClassVar[int]
    FROM_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    TO_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    BATCHES_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    first_seq: int
    last_seq: int
    from_unix_ms: int
    to_unix_ms: int
    batches: int
    samples: int
    reason: str
    def __init__(self, first_seq: _Optional[int] = ..., last_seq: _Optional[int] = ..., from_unix_ms: _Optional[int] = ..., to_unix_ms: _Optional[int] = ..., batches: _Optional[int] = ..., samples: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class AgentCounters(_message.Message):
    __slots__ = ("generated_samples", "dropped_samples", "spool_bytes", "spool_batches")
    class DroppedSamplesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    GENERATED_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    DROPPED_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    SPOOL_BYTES_FIELD_NUMBER: _ClassVar[int]
    SPOOL_BATCHES_FIELD_NUMBER: _ClassVar[int]
    generated_samples: int
    dropped_samples: _containers.ScalarMap[str, int]
    spool_bytes: int
    spool_batches: int
    def __init__(self, generated_samples: _Optional[int] = ..., dropped_samples: _Optional[_Mapping[str, int]] = ..., spool_bytes: _Optional[int] = ..., spool_batches: _Optional[int] = ...) -> None: ...

class LabelSet(_message.Message):
    __slots__ = ("labels",)
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    LABELS_FIELD_NUMBER: _ClassVar[int]
    labels: _containers.ScalarMap[str, str]
    def __init__(self, labels: _Optional[_Mapping[str, str]] = ...) -> None: ...

class SampleColumns(_message.Message):
    __slots__ = ("names", "units", "label_sets", "name_index", "unit_index", "labels_index", "values", "time_unix_ms")
    NAMES_FIELD_NUMBER: _ClassVar[int]
    UNITS_FIELD_NUMBER: _ClassVar[int]
    LABEL_SETS_FIELD_NUMBER: _ClassVar[int]
    NAME_INDEX_FIELD_NUMBER: _ClassVar[int]
    UNIT_INDEX_FIELD_NUMBER: _ClassVar[int]
    LABELS_INDEX_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    TIME_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    names: _containers.RepeatedScalarFieldContainer[str]
    units: _containers.RepeatedScalarFieldContainer[str]
    label_sets: _containers.RepeatedCompositeFieldContainer[LabelSet]
    name_index: _containers.RepeatedScalarFieldContainer[int]
    unit_index: _containers.RepeatedScalarFieldContainer[int]
    labels_index: _containers.RepeatedScalarFieldContainer[int]
    values: _containers.RepeatedScalarFieldContainer[float]
    time_unix_ms: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, names: _Optional[_Iterable[str]] = ..., units: _Optional[_Iterable[str]] = ..., label_sets: _Optional[_Iterable[_Union[LabelSet, _Mapping]]] = ..., name_index: _Optional[_Iterable[int]] = ..., unit_index: _Optional[_Iterable[int]] = ..., labels_index: _Optional[_Iterable[int]] = ..., values: _Optional[_Iterable[float]] = ..., time_unix_ms: _Optional[_Iterable[int]] = ...) -> None: ...

class Batch(_message.Message):
    __slots__ = ("agent_id", "dealer_id", "seq", "boot_id", "hostname", "agent_version", "created_unix_ms", "samples", "endpoints", "gaps", "counters", "sample_columns")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    DEALER_ID_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    BOOT_ID_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    AGENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    CREATED_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    ENDPOINTS_FIELD_NUMBER: _ClassVar[int]
    GAPS_FIELD_NUMBER: _ClassVar[int]
    COUNTERS_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_COLUMNS_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    dealer_id: str
    seq: int
    boot_id: str
    hostname: str
    agent_version: str
    created_unix_ms: int
    samples: _containers.RepeatedCompositeFieldContainer[Sample]
    endpoints: _containers.RepeatedCompositeFieldContainer[EndpointStats]
    gaps: _containers.RepeatedCompositeFieldContainer[Gap]
    counters: AgentCounters
    sample_columns: SampleColumns
    def __init__(self, agent_id: _Optional[str] = ..., dealer_id: _Optional[str] = ..., seq: _Optional[int] = ..., boot_id: _Optional[str] = ..., hostname: _Optional[str] = ..., agent_version: _Optional[str] = ..., created_unix_ms: _Optional[int] = ..., samples: _Optional[_Iterable[_Union[Sample, _Mapping]]] = ..., endpoints: _Optional[_Iterable[_Union[EndpointStats, _Mapping]]] = ..., gaps: _Optional[_Iterable[_Union[Gap, _Mapping]]] = ..., counters: _Optional[_Union[AgentCounters, _Mapping]] = ..., sample_columns: _Optional[_Union[SampleColumns, _Mapping]] = ...) -> None: ...

class Ack(_message.Message):
    __slots__ = ("seq", "status", "code", "field", "message", "retry_after_ms", "samples_stored")
    class Status(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        STATUS_UNSPECIFIED: _ClassVar[Ack.Status]
        STORED: _ClassVar[Ack.Status]
        DUPLICATE: _ClassVar[Ack.Status]
        REJECTED: _ClassVar[Ack.Status]
        RETRY: _ClassVar[Ack.Status]
    STATUS_UNSPECIFIED: Ack.Status
    STORED: Ack.Status
    DUPLICATE: Ack.Status
    REJECTED: Ack.Status
    RETRY: Ack.Status
    SEQ_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    FIELD_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    RETRY_AFTER_MS_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_STORED_FIELD_NUMBER: _ClassVar[int]
    seq: int
    status: Ack.Status
    code: int
    field: str
    message: str
    retry_after_ms: int
    samples_stored: int
    def __init__(self, seq: _Optional[int] = ..., status: _Optional[_Union[Ack.Status, str]] = ..., code: _Optional[int] = ..., field: _Optional[str] = ..., message: _Optional[str] = ..., retry_after_ms: _Optional[int] = ..., samples_stored: _Optional[int] = ...) -> None: ...

class HelloRequest(_message.Message):
    __slots__ = ("agent_id", "hostname", "agent_version", "boot_id")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    AGENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    BOOT_ID_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    hostname: str
    agent_version: str
    boot_id: str
    def __init__(self, agent_id: _Optional[str] = ..., hostname: _Optional[str] = ..., agent_version: _Optional[str] = ..., boot_id: _Optional[str] = ...) -> None: ...

class HelloResponse(_message.Message):
    __slots__ = ("dealer_id", "dealer_name", "last_committed_seq", "server_time_unix_ms", "accepts_sample_columns")
    DEALER_ID_FIELD_NUMBER: _ClassVar[int]
    DEALER_NAME_FIELD_NUMBER: _ClassVar[int]
    LAST_COMMITTED_SEQ_FIELD_NUMBER: _ClassVar[int]
    SERVER_TIME_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    ACCEPTS_SAMPLE_COLUMNS_FIELD_NUMBER: _ClassVar[int]
    dealer_id: str
    dealer_name: str
    last_committed_seq: int
    server_time_unix_ms: int
    accepts_sample_columns: bool
    def __init__(self, dealer_id: _Optional[str] = ..., dealer_name: _Optional[str] = ..., last_committed_seq: _Optional[int] = ..., server_time_unix_ms: _Optional[int] = ..., accepts_sample_columns: _Optional[bool] = ...) -> None: ...
