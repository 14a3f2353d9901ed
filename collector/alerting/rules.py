"""Alert rules as frozen dataclasses, their validation, and the seed's built-in defaults.

A rule compares an aggregate of one metric over a window with a warning and a
critical threshold. Each threshold has a recovery level (hysteresis): an alert
that fires above 200 ms with recovery 180 ms stays firing at 190 ms.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from collector.alerting.errors import RuleError
from dealerpulse.config import Option, resolve
from dealerpulse.model import Labels

MAX_NAME_LENGTH = 200
_METRIC_RE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*$")

# The dealer health figures of collector.health a rule can watch, per dealer
# (per endpoint with a ``route`` matcher). Each is computed once over the
# rule's whole window (merged latency sketches for the percentiles), so it is
# already the window's aggregate: the one aggregation they take is ``avg``,
# read as "the figure over the window". The percentile is in the name.
HEALTH_FIGURES: Mapping[str, str] = {
    "health.response_time_avg_ms": "average response time (ms)",
    "health.response_time_p50_ms": "median response time (ms)",
    "health.response_time_p95_ms": "95th percentile response time (ms)",
    "health.response_time_p99_ms": "99th percentile response time (ms)",
    "health.error_rate_percent": "server errors per request (%)",
    "health.throughput_rpm": "requests per minute",
    "health.uptime_percent": "uptime (%): probe checks passed, else agent liveness",
}
HEALTH_PREFIX = "health."
# ``endpoint`` is the api.* rules' name for the route; both are accepted.
HEALTH_LABELS = ("route", "endpoint", "method")


class Aggregation(StrEnum):
    AVG = "avg"
    MAX = "max"
    MIN = "min"
    P95 = "p95"
    RATE = "rate"


class Comparator(StrEnum):
    GT = ">"
    GE = ">="
    LT = "<"
    LE = "<="

    def beyond(self, value: float, level: float) -> bool:
        """Whether ``value`` is on the alerting side of ``level``."""
        if self is Comparator.GT:
            return value > level
        if self is Comparator.GE:
            return value >= level
        if self is Comparator.LT:
            return value < level
        return value <= level

    @property
    def upward(self) -> bool:
        return self in (Comparator.GT, Comparator.GE)


class Severity(StrEnum):
    WARNING = "warning"
    CRITICAL = "critical"


class RuleKind(StrEnum):
    THRESHOLD = "threshold"
    # The value is the seconds since an agent was last heard from.
    AGENT_SILENCE = "agent_silence"


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Trigger levels and the levels an alert must cross back to resolve.

    A recovery left as None equals its trigger (no hysteresis).
    """

    warning: float | None = None
    critical: float | None = None
    warning_recovery: float | None = None
    critical_recovery: float | None = None

    def recovery_of(self, severity: Severity) -> float:
        if severity is Severity.CRITICAL:
            level, recovery = self.critical, self.critical_recovery
        else:
            level, recovery = self.warning, self.warning_recovery
        if level is None:
            raise RuleError(f"no {severity.value} threshold is set")
        return level if recovery is None else recovery

    def trigger_of(self, severity: Severity) -> float:
        level = self.critical if severity is Severity.CRITICAL else self.warning
        if level is None:
            raise RuleError(f"no {severity.value} threshold is set")
        return level

    def level(self, value: float, comparator: Comparator, held: Severity | None) -> Severity | None:
        """The severity ``value`` is at; ``held`` is the severity of a firing alert, if any.

        A held severity persists until the value crosses its recovery level.
        """
        if self.critical is not None and (
            comparator.beyond(value, self.critical)
            or (
                held is Severity.CRITICAL
                and comparator.beyond(value, self.recovery_of(Severity.CRITICAL))
            )
        ):
            return Severity.CRITICAL
        if self.warning is not None and (
            comparator.beyond(value, self.warning)
            or (held is not None and comparator.beyond(value, self.recovery_of(Severity.WARNING)))
        ):
            return Severity.WARNING
        return None

    def validate(self, comparator: Comparator) -> None:
        if self.warning is None and self.critical is None:
            raise RuleError("thresholds: set warning_threshold, critical_threshold or both")
        for name in ("warning", "critical", "warning_recovery", "critical_recovery"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not math.isfinite(value)):
                raise RuleError(f"{_field(name)}: must be a finite number, got {value!r}")
        for severity in Severity:
            trigger = self.critical if severity is Severity.CRITICAL else self.warning
            recovery = getattr(self, f"{severity.value}_recovery")
            if trigger is None:
                if recovery is not None:
                    raise RuleError(f"{severity.value}_recovery: set without a {_field(severity)}")
                continue
            if recovery is not None and comparator.beyond(recovery, trigger):
                side = "at or below" if comparator.upward else "at or above"
                raise RuleError(
                    f"{severity.value}_recovery: {recovery} must be {side} the "
                    f"{_field(severity)} {trigger} for comparator {comparator.value!r}"
                )
        warning, critical = self.warning, self.critical
        if (
            warning is not None
            and critical is not None
            and not comparator.beyond(critical, warning)
        ):
            raise RuleError(
                f"critical_threshold: {self.critical} must be beyond the warning_threshold "
                f"{self.warning} for comparator {comparator.value!r}"
            )


def _field(name: str) -> str:
    return f"{name}_threshold" if name in ("warning", "critical") else name


@dataclass(frozen=True, slots=True)
class Condition:
    metric: str
    aggregation: Aggregation
    window_s: int
    comparator: Comparator
    thresholds: Thresholds


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    condition: Condition
    for_s: int = 0
    # None: every dealer.
    dealer_id: str | None = None
    label_matchers: Labels = ()
    channels: tuple[str, ...] = ()
    kind: RuleKind = RuleKind.THRESHOLD
    # The seed's system_alerts.type ("cpu", "response_time", "agent_down"...).
    alert_type: str = "threshold"
    enabled: bool = True
    builtin: bool = False
    id: int | None = field(default=None, compare=False)

    def matches(self, labels: Labels) -> bool:
        """Whether a series with ``labels`` is in the rule's scope."""
        present = dict(labels)
        return all(present.get(key) == value for key, value in self.label_matchers)


def validate_rule(rule: Rule) -> Rule:
    """Return ``rule`` unchanged, or raise RuleError naming the bad field."""
    if not rule.name.strip() or len(rule.name) > MAX_NAME_LENGTH:
        raise RuleError(f"name: must be 1-{MAX_NAME_LENGTH} characters, got {rule.name!r}")
    condition = rule.condition
    if not _METRIC_RE.match(condition.metric):
        raise RuleError(
            f"metric: {condition.metric!r} is not a metric name (lower case, dot-separated)"
        )
    _positive_whole("window_s", condition.window_s)
    if isinstance(rule.for_s, bool) or not isinstance(rule.for_s, int) or rule.for_s < 0:
        raise RuleError(f"for_s: must be a whole number of seconds >= 0, got {rule.for_s!r}")
    condition.thresholds.validate(condition.comparator)
    if condition.metric.startswith(HEALTH_PREFIX):
        check_health_rule(rule)
    for channel in rule.channels:
        if not channel.strip():
            raise RuleError("channels: a channel name must not be empty")
    if len(set(rule.channels)) != len(rule.channels):
        raise RuleError(f"channels: {list(rule.channels)} names a channel twice")
    for key, value in rule.label_matchers:
        if not key or not isinstance(value, str):
            raise RuleError(f"label_matchers: bad pair {key!r}={value!r}")
    return rule


def check_health_rule(rule: Rule) -> None:
    """Raise RuleError unless a health.* rule names a known figure, avg, and route/method."""
    metric = rule.condition.metric
    if metric not in HEALTH_FIGURES:
        known = ", ".join(HEALTH_FIGURES)
        raise RuleError(f"metric: {metric!r} is not a health figure; known: {known}")
    aggregation = rule.condition.aggregation
    if aggregation is not Aggregation.AVG:
        raise RuleError(
            f"aggregation: {metric} is one figure over the whole window, so it takes avg, "
            f"not {aggregation.value}"
        )
    for key, _ in rule.label_matchers:
        if key not in HEALTH_LABELS:
            names = ", ".join(HEALTH_LABELS)
            raise RuleError(f"label_matchers: {metric} can match {names}, not {key!r}")


def _positive_whole(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise RuleError(f"{name}: must be a positive whole number of seconds, got {value!r}")


# ---- the seed's defaults


def threshold_value(value: Any) -> float:
    """'200', '200ms', '0.1%', 85 -> a positive float (the unit is the rule's own)."""
    raw = str(value).strip().lower()
    for suffix in ("ms", "%", "s"):
        if raw.endswith(suffix):
            raw = raw[: -len(suffix)].strip()
            break
    try:
        number = float(raw)
    except ValueError:
        raise ValueError(f"must be a number such as 200 or 0.1%, got {value!r}") from None
    if not math.isfinite(number) or number <= 0:
        raise ValueError(f"must be a positive number, got {value!r}")
    return number


ALERT_OPTIONS = (
    Option(
        "alert_threshold_response_time",
        threshold_value,
        200.0,
        "average API response time (ms) above which a warning fires",
        env=("ALERT_THRESHOLD_RESPONSE_TIME",),
    ),
    Option(
        "alert_threshold_error_rate",
        threshold_value,
        0.1,
        "API error rate (percent of requests) above which a critical alert fires",
        env=("ALERT_THRESHOLD_ERROR_RATE",),
    ),
    Option(
        "alert_threshold_cpu",
        threshold_value,
        80.0,
        "CPU use (percent) above which a warning fires",
        env=("ALERT_THRESHOLD_CPU",),
    ),
    Option(
        "alert_threshold_memory",
        threshold_value,
        85.0,
        "memory use (percent) above which a critical alert fires",
        env=("ALERT_THRESHOLD_MEMORY",),
    ),
    Option(
        "alert_threshold_disk",
        threshold_value,
        90.0,
        "disk use (percent of a mount) above which a critical alert fires",
        env=("ALERT_THRESHOLD_DISK",),
    ),
    Option(
        "alert_agent_silence_s",
        threshold_value,
        180.0,
        "seconds without data from an agent after which an 'agent down' alert fires",
        env=("ALERT_AGENT_SILENCE_S",),
    ),
)

DEFAULT_WINDOW_S = 300
DEFAULT_FOR_S = 60
# Builtins recover at 90 % of their trigger so a value hovering at it does not flap.
_RECOVERY_FRACTION = 0.9


# The seed's alert types: metric, default severity, aggregation over the window.
SEED_ALERT_TYPES: Mapping[str, tuple[str, Severity, Aggregation]] = {
    "response_time": ("api.response_time_ms", Severity.WARNING, Aggregation.AVG),
    "error_rate": ("api.error_rate_percent", Severity.CRITICAL, Aggregation.AVG),
    "cpu": ("cpu.percent", Severity.WARNING, Aggregation.AVG),
    "memory": ("memory.percent", Severity.CRITICAL, Aggregation.AVG),
    "disk": ("disk.used_percent", Severity.CRITICAL, Aggregation.MAX),
}
# The settings key of each seed alert type's default level.
_SEED_SETTING = {
    "response_time": "alert_threshold_response_time",
    "error_rate": "alert_threshold_error_rate",
    "cpu": "alert_threshold_cpu",
    "memory": "alert_threshold_memory",
    "disk": "alert_threshold_disk",
}


def _above(
    alert_type: str, level: float, name: str, channels: tuple[str, ...], builtin: bool
) -> Rule:
    """A rule that fires when the seed alert type's metric goes above ``level``."""
    metric, severity, aggregation = SEED_ALERT_TYPES[alert_type]
    recovery = level * _RECOVERY_FRACTION
    thresholds = (
        Thresholds(critical=level, critical_recovery=recovery)
        if severity is Severity.CRITICAL
        else Thresholds(warning=level, warning_recovery=recovery)
    )
    condition = Condition(metric, aggregation, DEFAULT_WINDOW_S, Comparator.GT, thresholds)
    return Rule(
        name=name,
        condition=condition,
        for_s=DEFAULT_FOR_S,
        channels=channels,
        alert_type=alert_type,
        builtin=builtin,
    )


def rule_from_seed_request(
    alert_type: str, threshold: float, dealer_id: str, channels: tuple[str, ...] = ()
) -> Rule:
    """The seed's ``POST /api/ai/performance-alerts {alertType, threshold, dealerId}`` as a rule.

    ``alertType`` is one of :data:`SEED_ALERT_TYPES` (camelCase accepted); the rule
    has the built-in's metric, severity, window and pending time, for one dealer.
    """
    key = re.sub(r"(?<!^)(?=[A-Z])", "_", alert_type.strip()).lower()
    if key not in SEED_ALERT_TYPES:
        raise RuleError(
            f"alertType: {alert_type!r} is not one of {', '.join(sorted(SEED_ALERT_TYPES))}"
        )
    if isinstance(threshold, bool) or not isinstance(threshold, int | float):
        raise RuleError(f"threshold: must be a number, got {threshold!r}")
    if not math.isfinite(threshold) or threshold <= 0:
        raise RuleError(f"threshold: must be a positive number, got {threshold!r}")
    if not dealer_id:
        raise RuleError("dealerId: required")
    rule = _above(key, float(threshold), f"{key} > {threshold:g} ({dealer_id})", channels, False)
    return validate_rule(replace(rule, dealer_id=dealer_id))


def builtin_rules(settings: Mapping[str, Any], channels: tuple[str, ...] = ()) -> tuple[Rule, ...]:
    """The seed's default rules from resolved :data:`ALERT_OPTIONS` values."""
    silence = Condition(
        "agent.silence_s",
        Aggregation.MAX,
        DEFAULT_WINDOW_S,
        Comparator.GT,
        Thresholds(critical=float(settings["alert_agent_silence_s"])),
    )
    rules = (
        *(
            _above(kind, settings[_SEED_SETTING[kind]], f"builtin:{kind}", channels, True)
            for kind in SEED_ALERT_TYPES
        ),
        Rule(
            name="builtin:agent_down",
            condition=silence,
            channels=channels,
            kind=RuleKind.AGENT_SILENCE,
            alert_type="agent_down",
            builtin=True,
        ),
    )
    return tuple(validate_rule(rule) for rule in rules)


def builtin_rules_from_env(
    env: Mapping[str, str], channels: tuple[str, ...] = ()
) -> tuple[Rule, ...]:
    """The defaults as the environment changes them (ConfigError names a bad variable)."""
    return builtin_rules(resolve(ALERT_OPTIONS, {}, env), channels)


__all__ = [
    "ALERT_OPTIONS",
    "HEALTH_FIGURES",
    "Aggregation",
    "Comparator",
    "Condition",
    "Rule",
    "RuleError",
    "RuleKind",
    "Severity",
    "Thresholds",
    "builtin_rules",
    "builtin_rules_from_env",
    "check_health_rule",
    "rule_from_seed_request",
    "validate_rule",
]
