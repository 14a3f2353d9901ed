"""Alerts protobuf messages <-> the alerting dataclasses: the only module that knows both.

Decoding validates: a bad field raises :class:`RuleError` (a ``ValueError``)
whose message names it, which the service answers with INVALID_ARGUMENT.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import TypeVar

from collector.alerting.errors import RuleError
from collector.alerting.manage import Episode, SilenceSpec
from collector.alerting.rules import (
    Aggregation,
    Comparator,
    Condition,
    Rule,
    RuleKind,
    Thresholds,
)
from dealerpulse.clock import from_unix_ms, to_unix_ms
from dealerpulse.model import Labels
from dealerpulse.v1 import alerts_pb2 as pb

_E = TypeVar("_E", Aggregation, Comparator, RuleKind)


def _choice(kind: type[_E], field: str, raw: str, default: _E | None = None) -> _E:
    if not raw and default is not None:
        return default
    try:
        return kind(raw)
    except ValueError:
        allowed = ", ".join(member.value for member in kind)
        raise RuleError(f"{field}: must be one of {allowed}, got {raw!r}") from None


def _labels(pairs: Mapping[str, str]) -> Labels:
    return tuple(sorted(pairs.items()))


def _optional(message: pb.Thresholds, name: str) -> float | None:
    return getattr(message, name) if message.HasField(name) else None


def rule_from_proto(message: pb.AlertRule) -> Rule:
    thresholds = Thresholds(
        warning=_optional(message.thresholds, "warning"),
        critical=_optional(message.thresholds, "critical"),
        warning_recovery=_optional(message.thresholds, "warning_recovery"),
        critical_recovery=_optional(message.thresholds, "critical_recovery"),
    )
    condition = Condition(
        metric=message.metric,
        aggregation=_choice(Aggregation, "aggregation", message.aggregation),
        window_s=message.window_s,
        comparator=_choice(Comparator, "comparator", message.comparator),
        thresholds=thresholds,
    )
    kind = _choice(RuleKind, "kind", message.kind, RuleKind.THRESHOLD)
    return Rule(
        name=message.name,
        condition=condition,
        for_s=message.for_s,
        dealer_id=message.dealer_id or None,
        label_matchers=_labels(message.label_matchers),
        channels=tuple(message.channels),
        kind=kind,
        alert_type=message.alert_type or kind.value,
        enabled=message.enabled,
        builtin=message.builtin,
        id=message.id or None,
    )


def rule_to_proto(rule: Rule) -> pb.AlertRule:
    condition, levels = rule.condition, rule.condition.thresholds
    thresholds = pb.Thresholds()
    for name in ("warning", "critical", "warning_recovery", "critical_recovery"):
        value = getattr(levels, name)
        if value is not None:
            setattr(thresholds, name, value)
    return pb.AlertRule(
        id=rule.id or 0,
        name=rule.name,
        kind=rule.kind.value,
        alert_type=rule.alert_type,
        metric=condition.metric,
        aggregation=condition.aggregation.value,
        window_s=condition.window_s,
        comparator=condition.comparator.value,
        thresholds=thresholds,
        for_s=rule.for_s,
        dealer_id=rule.dealer_id or "",
        label_matchers=dict(rule.label_matchers),
        channels=list(rule.channels),
        enabled=rule.enabled,
        builtin=rule.builtin,
    )


def _ms(moment: datetime | None) -> int:
    return 0 if moment is None else to_unix_ms(moment)


def alert_to_proto(episode: Episode) -> pb.Alert:
    message = pb.Alert(
        id=episode.id,
        dealer_id=episode.dealer_id or "",
        agent_id=episode.agent_id or "",
        labels=dict(episode.labels),
        rule_id=episode.rule_id or 0,
        type=episode.type,
        severity=episode.severity,
        state=episode.state,
        message=episode.message,
        started_unix_ms=_ms(episode.started_at),
        resolved_unix_ms=_ms(episode.resolved_at),
        acknowledged_by=episode.acknowledged_by or "",
        acknowledged_unix_ms=_ms(episode.acknowledged_at),
    )
    if episode.value is not None:
        message.value = episode.value
    if episode.threshold is not None:
        message.threshold = episode.threshold
    return message


def silence_from_proto(message: pb.Silence, created_by: str) -> SilenceSpec:
    if message.starts_unix_ms < 0 or message.ends_unix_ms <= 0:
        raise RuleError("starts_unix_ms, ends_unix_ms: give the silence's period in Unix ms")
    if message.ends_unix_ms <= message.starts_unix_ms:
        raise RuleError("ends_unix_ms: a silence must end after it starts")
    return SilenceSpec(
        dealer_id=message.dealer_id or None,
        rule_id=message.rule_id or None,
        label_matchers=_labels(message.label_matchers),
        starts_at=from_unix_ms(message.starts_unix_ms),
        ends_at=from_unix_ms(message.ends_unix_ms),
        created_by=created_by,
        comment=message.comment,
    )


def silence_to_proto(spec: SilenceSpec) -> pb.Silence:
    return pb.Silence(
        id=spec.id or 0,
        dealer_id=spec.dealer_id or "",
        rule_id=spec.rule_id or 0,
        label_matchers=dict(spec.label_matchers),
        starts_unix_ms=to_unix_ms(spec.starts_at),
        ends_unix_ms=to_unix_ms(spec.ends_at),
        created_by=spec.created_by,
        comment=spec.comment,
    )
