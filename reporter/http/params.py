"""Request input -> plain values: query parameters and the alert rule body.

Every bad input raises :class:`InvalidArgument` with a message naming the
parameter; the domain's own validation (``validate_rule``) runs later.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any, TypeVar

from collector.alerting.rules import (
    Aggregation,
    Comparator,
    Condition,
    Rule,
    RuleError,
    Thresholds,
    rule_from_seed_request,
    validate_rule,
)
from reporter.http.errors import InvalidArgument
from reporter.model import RangeError, ReportFormat, TimeRange

DEFAULT_TIME_RANGE = "24h"
ALERT_STATES = ("firing", "resolved", "all")
MAX_ALERT_LIMIT = 1000
MAX_ID = 2**63 - 1
_E = TypeVar("_E", Aggregation, Comparator, ReportFormat)


def dealer_param(query: Mapping[str, str]) -> str | None:
    value = query.get("dealerId", "").strip()
    return value or None


def time_range_param(query: Mapping[str, str], now: datetime) -> TimeRange:
    """``timeRange=1h|24h|7d|30d|<n>m|<n>h|<n>d`` ending now, or ``start`` and ``end`` (ISO)."""
    named = query.get("timeRange", "").strip()
    start, end = query.get("start", "").strip(), query.get("end", "").strip()
    try:
        if start or end:
            if named:
                raise InvalidArgument("timeRange: give either timeRange or start and end, not both")
            if not (start and end):
                raise InvalidArgument("start and end: give both (ISO 8601 times with a zone)")
            return TimeRange(_instant("start", start), _instant("end", end))
        return TimeRange.last(named or DEFAULT_TIME_RANGE, now)
    except RangeError as exc:
        raise InvalidArgument(str(exc)) from None


def _instant(name: str, raw: str) -> datetime:
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise InvalidArgument(f"{name}: {raw!r} is not an ISO 8601 time") from None
    if moment.tzinfo is None:
        raise InvalidArgument(f"{name}: {raw!r} needs a time zone, e.g. 2026-11-26T20:00:00Z")
    return moment


def alert_state_param(query: Mapping[str, str]) -> str | None:
    """``firing`` (default), ``resolved`` or ``all`` (None: no filter)."""
    state = query.get("state", "").strip() or "firing"
    if state not in ALERT_STATES:
        raise InvalidArgument(f"state: must be one of {', '.join(ALERT_STATES)}, got {state!r}")
    return None if state == "all" else state


def limit_param(query: Mapping[str, str], default: int, maximum: int) -> int:
    raw = query.get("limit", "").strip()
    if not raw:
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= maximum:
        raise InvalidArgument(f"limit: must be a whole number from 1 to {maximum}, got {raw!r}")
    return int(raw)


def id_param(raw: str, what: str) -> int:
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_ID:
        raise InvalidArgument(f"{what}: must be a positive whole number, got {raw!r}")
    return int(raw)


def format_param(query: Mapping[str, str]) -> ReportFormat | None:
    raw = query.get("format", "").strip()
    return _choice(ReportFormat, "format", raw) if raw else None


def _choice(kind: type[_E], field: str, raw: Any) -> _E:
    try:
        return kind(raw)
    except ValueError:
        allowed = ", ".join(member.value for member in kind)
        raise InvalidArgument(f"{field}: must be one of {allowed}, got {raw!r}") from None


# ---- the rule body of POST /api/ai/performance-alerts


def rule_from_body(body: Any) -> Rule:
    """The seed's ``{alertType, threshold, dealerId}`` or a full rule (``metric`` given), validated.

    The seed form takes the optional ``name``, ``channels``, ``enabled``,
    ``windowSeconds`` and ``forSeconds`` on top.
    """
    if not isinstance(body, dict):
        raise InvalidArgument("body: must be a JSON object")
    try:
        return validate_rule(_full_rule(body) if "metric" in body else _seed_rule(body))
    except RuleError as exc:
        raise InvalidArgument(str(exc)) from None


def _seed_rule(body: Mapping[str, Any]) -> Rule:
    for required in ("alertType", "threshold", "dealerId"):
        if required not in body:
            raise InvalidArgument(f"{required}: required (or give a full rule with metric)")
    alert_type = _string(body, "alertType", "")
    dealer_id = _string(body, "dealerId", "")
    rule = rule_from_seed_request(
        alert_type, body["threshold"], dealer_id, _strings(body, "channels")
    )
    condition = dataclasses.replace(
        rule.condition, window_s=_whole(body, "windowSeconds", rule.condition.window_s)
    )
    return dataclasses.replace(
        rule,
        name=_string(body, "name", rule.name),
        condition=condition,
        for_s=_whole(body, "forSeconds", rule.for_s, minimum=0),
        enabled=_flag(body, "enabled", True),
    )


def _full_rule(body: Mapping[str, Any]) -> Rule:
    thresholds = Thresholds(
        warning=_number(body, "warningThreshold"),
        critical=_number(body, "criticalThreshold"),
        warning_recovery=_number(body, "warningRecovery"),
        critical_recovery=_number(body, "criticalRecovery"),
    )
    condition = Condition(
        metric=_string(body, "metric", ""),
        aggregation=_choice(Aggregation, "aggregation", body.get("aggregation", "avg")),
        window_s=_whole(body, "windowSeconds", 300),
        comparator=_choice(Comparator, "comparator", body.get("comparator", ">")),
        thresholds=thresholds,
    )
    return Rule(
        name=_string(body, "name", ""),
        condition=condition,
        for_s=_whole(body, "forSeconds", 0, minimum=0),
        dealer_id=_string(body, "dealerId", "") or None,
        label_matchers=_label_matchers(body),
        channels=_strings(body, "channels"),
        alert_type=_string(body, "alertType", "threshold") or "threshold",
        enabled=_flag(body, "enabled", True),
    )


def _string(body: Mapping[str, Any], key: str, default: str) -> str:
    value = body.get(key, default)
    if value is None:
        return default
    if not isinstance(value, str):
        raise InvalidArgument(f"{key}: must be a string, got {value!r}")
    return value.strip()


def _strings(body: Mapping[str, Any], key: str) -> tuple[str, ...]:
    value = body.get(key) or []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise InvalidArgument(f"{key}: must be a list of strings, got {value!r}")
    return tuple(item.strip() for item in value)


def _number(body: Mapping[str, Any], key: str) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidArgument(f"{key}: must be a finite number, got {value!r}")
    return float(value)


def _whole(body: Mapping[str, Any], key: str, default: int, minimum: int = 1) -> int:
    value = body.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= 2**31 - 1:
        raise InvalidArgument(
            f"{key}: must be a whole number of seconds from {minimum} to {2**31 - 1}, got {value!r}"
        )
    return value


def _flag(body: Mapping[str, Any], key: str, default: bool) -> bool:
    value = body.get(key, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise InvalidArgument(f"{key}: must be true or false, got {value!r}")
    return value


def _label_matchers(body: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    value = body.get("labelMatchers") or {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise InvalidArgument(f"labelMatchers: must be an object of strings, got {value!r}")
    return tuple(sorted((str(k), v) for k, v in value.items()))
