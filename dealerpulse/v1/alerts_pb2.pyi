from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Thresholds(_message.Message):
    __slots__ = ("warning", "critical", "warning_recovery", "critical_recovery")
    WARNING_FIELD_NUMBER: _ClassVar[int]
    CRITICAL_FIELD_NUMBER: _ClassVar[int]
    WARNING_RECOVERY_FIELD_NUMBER: _ClassVar[int]
    CRITICAL_RECOVERY_FIELD_NUMBER: _ClassVar[int]
    warning: float
    critical: float
    warning_recovery: float
    critical_recovery: float
    def __init__(self, warning: _Optional[float] = ..., critical: _Optional[float] = ..., warning_recovery: _Optional[float] = ..., critical_recovery: _Optional[float] = ...) -> None: ...

class AlertRule(_message.Message):
    __slots__ = ("id", "name", "kind", "alert_type", "metric", "aggregation", "window_s", "comparator", "thresholds", "for_s", "dealer_id", "label_matchers", "channels", "enabled", "builtin")
    class LabelMatchersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    ALERT_TYPE_FIELD_NUMBER: _ClassVar[int]
    METRIC_FIELD_NUMBER: _ClassVar[int]
    AGGREGATION_FIELD_NUMBER: _ClassVar[int]
    WINDOW_S_FIELD_NUMBER: _ClassVar[int]
    COMPARATOR_FIELD_NUMBER: _ClassVar[int]
    THRESHOLDS_FIELD_NUMBER: _ClassVar[int]
    FOR_S_FIELD_NUMBER: _ClassVar[int]
    DEALER_ID_FIELD_NUMBER: _ClassVar[int]
    LABEL_MATCHERS_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    BUILTIN_FIELD_NUMBER: _ClassVar[int]
    id: int
    name: str
    kind: str
    alert_type: str
    metric: str
    aggregation: str
    window_s: int
    comparator: str
    thresholds: Thresholds
    for_s: int
    dealer_id: str
    label_matchers: _containers.ScalarMap[str, str]
    channels: _containers.RepeatedScalarFieldContainer[str]
    enabled: bool
    builtin: bool
    def __init__(self, id: _Optional[int] = ..., name: _Optional[str] = ..., kind: _Optional[str] = ..., alert_type: _Optional[str] = ..., metric: _Optional[str] = ..., aggregation: _Optional[str] = ..., window_s: _Optional[int] = ..., comparator: _Optional[str] = ..., thresholds: _Optional[_Union[Thresholds, _Mapping]] = ..., for_s: _Optional[int] = ..., dealer_id: _Optional[str] = ..., label_matchers: _Optional[_Mapping[str, str]] = ..., channels: _Optional[_Iterable[str]] = ..., enabled: _Optional[bool] = ..., builtin: _Optional[bool] = ...) -> None: ...

class Alert(_message.Message):
    __slots__ = ("id", "dealer_id", "agent_id", "labels", "rule_id", "type", "severity", "state", "message", "value", "threshold", "started_unix_ms", "resolved_unix_ms", "acknowledged_by", "acknowledged_unix_ms")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    DEALER_ID_FIELD_NUMBER: _ClassVar[int]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    RULE_ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    SEVERITY_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    STARTED_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    RESOLVED_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    ACKNOWLEDGED_BY_FIELD_NUMBER: _ClassVar[int]
    ACKNOWLEDGED_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    id: int
    dealer_id: str
    agent_id: str
    labels: _containers.ScalarMap[str, str]
    rule_id: int
    type: str
    severity: str
    state: str
    message: str
    value: float
    threshold: float
    started_unix_ms: int
    resolved_unix_ms: int
    acknowledged_by: str
    acknowledged_unix_ms: int
    def __init__(self, id: _Optional[int] = ..., dealer_id: _Optional[str] = ..., agent_id: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., rule_id: _Optional[int] = ..., type: _Optional[str] = ..., severity: _Optional[str] = ..., state: _Optional[str] = ..., message: _Optional[str] = ..., value: _Optional[float] = ..., threshold: _Optional[float] = ..., started_unix_ms: _Optional[int] = ..., resolved_unix_ms: _Optional[int] = ..., acknowledged_by: _Optional[str] = ..., acknowledged_unix_ms: _Optional[int] = ...) -> None: ...

class Silence(_message.Message):
    __slots__ = ("id", "dealer_id", "rule_id", "label_matchers", "starts_unix_ms", "ends_unix_ms", "created_by", "comment")
    class LabelMatchersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    DEALER_ID_FIELD_NUMBER: _ClassVar[int]
    RULE_ID_FIELD_NUMBER: _ClassVar[int]
    LABEL_MATCHERS_FIELD_NUMBER: _ClassVar[int]
    STARTS_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    ENDS_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    CREATED_BY_FIELD_NUMBER: _ClassVar[int]
    COMMENT_FIELD_NUMBER: _ClassVar[int]
    id: int
    dealer_id: str
    rule_id: int
    label_matchers: _containers.ScalarMap[str, str]
    starts_unix_ms: int
    ends_unix_ms: int
    created_by: str
    comment: str
    def __init__(self, id: _Optional[int] = ..., dealer_id: _Optional[str] = ..., rule_id: _Optional[int] = ..., label_matchers: _Optional[_Mapping[str, str]] = ..., starts_unix_ms: _Optional[int] = ..., ends_unix_ms: _Optional[int] = ..., created_by: _Optional[str] = ..., comment: _Optional[str] = ...) -> None: ...

class CreateRuleRequest(_message.Message):
    __slots__ = ("rule",)
    RULE_FIELD_NUMBER: _ClassVar[int]
    rule: AlertRule
    def __init__(self, rule: _Optional[_Union[AlertRule, _Mapping]] = ...) -> None: ...

class GetRuleRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: int
    def __init__(self, id: _Optional[int] = ...) -> None: ...

class ListRulesRequest(_message.Message):
    __slots__ = ("dealer_id",)
    DEALER_ID_FIELD_NUMBER: _ClassVar[int]
    dealer_id: str
    def __init__(self, dealer_id: _Optional[str] = ...) -> None: ...

class ListRulesResponse(_message.Message):
    __slots__ = ("rules",)
    RULES_FIELD_NUMBER: _ClassVar[int]
    rules: _containers.RepeatedCompositeFieldContainer[AlertRule]
    def __init__(self, rules: _Optional[_Iterable[_Union[AlertRule, _Mapping]]] = ...) -> None: ...

class UpdateRuleRequest(_message.Message):
    __slots__ = ("rule",)
    RULE_FIELD_NUMBER: _ClassVar[int]
    rule: AlertRule
    def __init__(self, rule: _Optional[_Union[AlertRule, _Mapping]] = ...) -> None: ...

class DeleteRuleRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: int
    def __init__(self, id: _Optional[int] = ...) -> None: ...

class DeleteRuleResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListAlertsRequest(_message.Message):
    __slots__ = ("dealer_id", "state", "severity", "since_unix_ms", "until_unix_ms", "limit")
    DEALER_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    SEVERITY_FIELD_NUMBER: _ClassVar[int]
    SINCE_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    UNTIL_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    dealer_id: str
    state: str
    severity: str
    since_unix_ms: int
    until_unix_ms: int
    limit: int
    def __init__(self, dealer_id: _Optional[str] = ..., state: _Optional[str] = ..., severity: _Optional[str] = ..., since_unix_ms: _Optional[int] = ..., until_unix_ms: _Optional[int] = ..., limit: _Optional[int] = ...) -> None: ...

class ListAlertsResponse(_message.Message):
    __slots__ = ("alerts",)
    ALERTS_FIELD_NUMBER: _ClassVar[int]
    alerts: _containers.RepeatedCompositeFieldContainer[Alert]
    def __init__(self, alerts: _Optional[_Iterable[_Union[Alert, _Mapping]]] = ...) -> None: ...

class AcknowledgeAlertRequest(_message.Message):
    __slots__ = ("id", "by")
    ID_FIELD_NUMBER: _ClassVar[int]
    BY_FIELD_NUMBER: _ClassVar[int]
    id: int
    by: str
    def __init__(self, id: _Optional[int] = ..., by: _Optional[str] = ...) -> None: ...

class ResolveAlertRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: int
    def __init__(self, id: _Optional[int] = ...) -> None: ...

class CreateSilenceRequest(_message.Message):
    __slots__ = ("silence",)
    SILENCE_FIELD_NUMBER: _ClassVar[int]
    silence: Silence
    def __init__(self, silence: _Optional[_Union[Silence, _Mapping]] = ...) -> None: ...

class ListSilencesRequest(_message.Message):
    __slots__ = ("dealer_id", "include_expired")
    DEALER_ID_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_EXPIRED_FIELD_NUMBER: _ClassVar[int]
    dealer_id: str
    include_expired: bool
    def __init__(self, dealer_id: _Optional[str] = ..., include_expired: _Optional[bool] = ...) -> None: ...

class ListSilencesResponse(_message.Message):
    __slots__ = ("silences",)
    SILENCES_FIELD_NUMBER: _ClassVar[int]
    silences: _containers.RepeatedCompositeFieldContainer[Silence]
    def __init__(self, silences: _Optional[_Iterable[_Union[Silence, _Mapping]]] = ...) -> None: ...

class DeleteSilenceRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: int
    def __init__(self, id: _Optional[int] = ...) -> None: ...

class DeleteSilenceResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
