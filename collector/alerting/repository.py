"""Rules in the alert_rules table: insert, load, and keeping the built-ins current."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, select, update

from collector.alerting.rules import (
    Aggregation,
    Comparator,
    Condition,
    Rule,
    RuleKind,
    Thresholds,
    validate_rule,
)
from collector.store.schema import alert_rules

logger = logging.getLogger(__name__)


def rule_row(rule: Rule) -> dict[str, Any]:
    """The alert_rules columns of ``rule`` (without id and times)."""
    condition = rule.condition
    thresholds = condition.thresholds
    return {
        "name": rule.name,
        "kind": rule.kind.value,
        "alert_type": rule.alert_type,
        "metric": condition.metric,
        "aggregation": condition.aggregation.value,
        "window_s": condition.window_s,
        "comparator": condition.comparator.value,
        "warning_threshold": thresholds.warning,
        "critical_threshold": thresholds.critical,
        "warning_recovery": thresholds.warning_recovery,
        "critical_recovery": thresholds.critical_recovery,
        "for_s": rule.for_s,
        "dealer_id": rule.dealer_id,
        "label_matchers": dict(rule.label_matchers),
        "channels": list(rule.channels),
        "enabled": rule.enabled,
        "builtin": rule.builtin,
    }


def rule_from_row(row: Row[Any]) -> Rule:
    thresholds = Thresholds(
        warning=row.warning_threshold,
        critical=row.critical_threshold,
        warning_recovery=row.warning_recovery,
        critical_recovery=row.critical_recovery,
    )
    condition = Condition(
        metric=row.metric,
        aggregation=Aggregation(row.aggregation),
        window_s=row.window_s,
        comparator=Comparator(row.comparator),
        thresholds=thresholds,
    )
    return Rule(
        name=row.name,
        condition=condition,
        for_s=row.for_s,
        dealer_id=row.dealer_id,
        label_matchers=tuple(sorted((str(k), str(v)) for k, v in row.label_matchers.items())),
        channels=tuple(str(channel) for channel in row.channels),
        kind=RuleKind(row.kind),
        alert_type=row.alert_type,
        enabled=row.enabled,
        builtin=row.builtin,
        id=row.id,
    )


def insert_rule(connection: Connection, rule: Rule, now: datetime) -> int:
    """Store a validated rule; returns its id."""
    values = rule_row(validate_rule(rule)) | {"created_at": now, "updated_at": now}
    inserted = connection.execute(alert_rules.insert().returning(alert_rules.c.id), values)
    return int(inserted.scalar_one())


def load_rules(connection: Connection, *, enabled_only: bool = True) -> list[Rule]:
    query = select(alert_rules).order_by(alert_rules.c.id)
    if enabled_only:
        query = query.where(alert_rules.c.enabled)
    return [rule_from_row(row) for row in connection.execute(query)]


def sync_builtin_rules(connection: Connection, rules: Iterable[Rule], now: datetime) -> None:
    """Insert missing built-ins; bring existing ones to the configured thresholds.

    ``enabled`` and ``channels`` of an existing built-in are the operator's
    choice and are kept.
    """
    existing = {
        row.name: row
        for row in connection.execute(select(alert_rules).where(alert_rules.c.builtin))
    }
    for rule in rules:
        row = existing.get(rule.name)
        if row is None:
            insert_rule(connection, rule, now)
            logger.info("added built-in alert rule %s", rule.name)
            continue
        wanted = rule_row(rule)
        for kept in ("enabled", "channels", "name"):
            wanted.pop(kept)
        if any(getattr(row, column) != value for column, value in wanted.items()):
            connection.execute(
                update(alert_rules)
                .where(alert_rules.c.id == row.id)
                .values(**wanted, updated_at=now)
            )
            logger.info("updated built-in alert rule %s from the configuration", rule.name)
