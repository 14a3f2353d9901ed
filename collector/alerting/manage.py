"""What the Alerts service changes in the store: rules, episodes, silences.

Plain frozen dataclasses in and out; :mod:`collector.alerting.codec` turns
them to and from protobuf at the edge. Every function is blocking (call it in
a thread) and runs in its own write transaction where it writes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, delete, or_, select, update

from collector.alerting.errors import AlertingError
from collector.alerting.repository import insert_rule, load_rules, rule_from_row, rule_row
from collector.alerting.rules import Rule, validate_rule
from collector.store.dialect import insert_ignoring_conflicts
from collector.store.engine import WRITE_OPTION, translated_errors
from collector.store.schema import (
    alert_rules,
    alert_states,
    notification_outbox,
    silences,
    system_alerts,
)
from dealerpulse.clock import to_unix_ms
from dealerpulse.model import Labels

MAX_ALERTS = 1000


class NotFound(AlertingError, LookupError):
    """No rule, alert or silence with that id (or not one the caller may see)."""


class Conflict(AlertingError):
    """The change contradicts the stored state (a duplicate name, a built-in rule)."""


@dataclass(frozen=True, slots=True)
class Episode:
    id: int
    dealer_id: str | None
    agent_id: str | None
    labels: Labels
    rule_id: int | None
    type: str
    severity: str
    state: str
    message: str
    value: float | None
    threshold: float | None
    started_at: datetime | None
    resolved_at: datetime | None
    acknowledged_by: str | None
    acknowledged_at: datetime | None


@dataclass(frozen=True, slots=True)
class AlertFilter:
    dealer_id: str | None = None
    state: str | None = None
    severity: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int = 100


@dataclass(frozen=True, slots=True)
class SilenceSpec:
    dealer_id: str | None
    rule_id: int | None
    label_matchers: Labels
    starts_at: datetime
    ends_at: datetime
    created_by: str
    comment: str = ""
    id: int | None = None


@contextmanager
def _writing(engine: Engine, action: str) -> Iterator[Connection]:
    with translated_errors(action), engine.connect() as connection:
        connection.execution_options(**{WRITE_OPTION: True})
        with connection.begin():
            yield connection


@contextmanager
def _reading(engine: Engine, action: str) -> Iterator[Connection]:
    with translated_errors(action), engine.connect() as connection:
        yield connection


# ---- rules


def create_rule(engine: Engine, rule: Rule, now: datetime) -> Rule:
    rule = validate_rule(dataclasses.replace(rule, builtin=False, id=None))
    with _writing(engine, "creating an alert rule") as connection:
        _refuse_duplicate_name(connection, rule.name, None)
        return dataclasses.replace(rule, id=insert_rule(connection, rule, now))


def get_rule(engine: Engine, rule_id: int) -> Rule:
    with _reading(engine, "reading an alert rule") as connection:
        row = connection.execute(select(alert_rules).where(alert_rules.c.id == rule_id)).first()
    if row is None:
        raise NotFound(f"no alert rule with id {rule_id}")
    return rule_from_row(row)


def list_rules(engine: Engine, dealer_id: str | None = None) -> list[Rule]:
    with _reading(engine, "listing alert rules") as connection:
        rules = load_rules(connection, enabled_only=False)
    return [rule for rule in rules if dealer_id is None or rule.dealer_id == dealer_id]


def update_rule(engine: Engine, rule: Rule, now: datetime) -> Rule:
    """Replace the stored rule ``rule.id``; a built-in keeps its condition (configured)."""
    if rule.id is None:
        raise NotFound("update needs the id of a stored rule")
    rule_id = rule.id
    stored = get_rule(engine, rule_id)
    if stored.builtin:
        # Thresholds of built-ins come from the configuration: only these change.
        rule = dataclasses.replace(stored, enabled=rule.enabled, channels=rule.channels)
    rule = validate_rule(dataclasses.replace(rule, builtin=stored.builtin))
    with _writing(engine, "updating an alert rule") as connection:
        _refuse_duplicate_name(connection, rule.name, rule.id)
        connection.execute(
            update(alert_rules)
            .where(alert_rules.c.id == rule.id)
            .values(**rule_row(rule), updated_at=now)
        )
        # A changed condition starts from ok: the old pending/firing no longer applies.
        if _condition_changed(stored, rule):
            _forget_states(connection, rule_id, now)
    return rule


def delete_rule(engine: Engine, rule_id: int, now: datetime) -> None:
    stored = get_rule(engine, rule_id)
    if stored.builtin:
        raise Conflict(f"rule {stored.name!r} is built in: disable it instead of deleting it")
    with _writing(engine, "deleting an alert rule") as connection:
        _forget_states(connection, rule_id, now)
        # History stays: past episodes keep their row without the rule.
        connection.execute(
            update(system_alerts).where(system_alerts.c.rule_id == rule_id).values(rule_id=None)
        )
        connection.execute(delete(silences).where(silences.c.rule_id == rule_id))
        connection.execute(delete(alert_rules).where(alert_rules.c.id == rule_id))


def _condition_changed(before: Rule, after: Rule) -> bool:
    return (before.condition, before.for_s, before.dealer_id, before.label_matchers) != (
        after.condition,
        after.for_s,
        after.dealer_id,
        after.label_matchers,
    )


def _forget_states(connection: Connection, rule_id: int, now: datetime) -> None:
    """Drop a rule's evaluation states, closing its open episodes (without notification)."""
    connection.execute(
        update(system_alerts)
        .where(system_alerts.c.rule_id == rule_id, ~system_alerts.c.resolved)
        .values(resolved=True, resolved_at=now, state="resolved", last_change_at=now)
    )
    connection.execute(delete(alert_states).where(alert_states.c.rule_id == rule_id))


def _refuse_duplicate_name(connection: Connection, name: str, own_id: int | None) -> None:
    query = select(alert_rules.c.id).where(alert_rules.c.name == name)
    found = connection.scalar(query)
    if found is not None and found != own_id:
        raise Conflict(f"name: a rule named {name!r} exists already (id {found})")


# ---- alerts (episodes)


def list_alerts(engine: Engine, where: AlertFilter) -> list[Episode]:
    query = select(system_alerts).order_by(system_alerts.c.id.desc())
    conditions: list[Any] = []
    if where.dealer_id is not None:
        conditions.append(system_alerts.c.dealer_id == where.dealer_id)
    if where.state:
        conditions.append(system_alerts.c.state == where.state)
    if where.severity:
        conditions.append(system_alerts.c.severity == where.severity)
    if where.since is not None:
        conditions.append(system_alerts.c.created_at >= where.since)
    if where.until is not None:
        conditions.append(system_alerts.c.created_at < where.until)
    query = query.where(*conditions).limit(max(1, min(where.limit, MAX_ALERTS)))
    with _reading(engine, "listing alerts") as connection:
        return [_episode(row) for row in connection.execute(query)]


def get_alert(engine: Engine, alert_id: int) -> Episode:
    with _reading(engine, "reading an alert") as connection:
        row = connection.execute(
            select(system_alerts).where(system_alerts.c.id == alert_id)
        ).first()
    if row is None:
        raise NotFound(f"no alert with id {alert_id}")
    return _episode(row)


def acknowledge_alert(engine: Engine, alert_id: int, by: str, now: datetime) -> Episode:
    with _writing(engine, "acknowledging an alert") as connection:
        done = connection.execute(
            update(system_alerts)
            .where(system_alerts.c.id == alert_id)
            .values(acknowledged_by=by, acknowledged_at=now)
        )
        if done.rowcount == 0:
            raise NotFound(f"no alert with id {alert_id}")
    return get_alert(engine, alert_id)


def resolve_alert(engine: Engine, alert_id: int, now: datetime, by: str = "") -> Episode:
    """Close the episode by hand; its subject starts over from ok at the next tick.

    Every channel that was sent (or is to be sent) the episode's firing gets a
    "resolved" notice saying who resolved it, written in the same transaction.
    """
    with _writing(engine, "resolving an alert") as connection:
        done = connection.execute(
            update(system_alerts)
            .where(system_alerts.c.id == alert_id, ~system_alerts.c.resolved)
            .values(resolved=True, resolved_at=now, state="resolved", last_change_at=now)
        )
        if done.rowcount:
            connection.execute(delete(alert_states).where(alert_states.c.episode_id == alert_id))
            _enqueue_manual_resolved(connection, alert_id, by, now)
    return get_alert(engine, alert_id)


def _enqueue_manual_resolved(connection: Connection, alert_id: int, by: str, now: datetime) -> None:
    firings = connection.execute(
        select(notification_outbox.c.channel, notification_outbox.c.payload)
        .where(
            notification_outbox.c.episode_id == alert_id,
            notification_outbox.c.kind == "firing",
            notification_outbox.c.status != "failed",
        )
        .order_by(notification_outbox.c.id)
    ).all()
    who = by or "someone"
    for channel, firing_payload in firings:
        payload = dict(firing_payload) | {
            "kind": "resolved",
            "resolved": True,
            "manual": True,
            "resolved_by": by,
            "at": now.isoformat(),
            "message": f"{firing_payload.get('message', '')} (resolved by hand by {who})",
        }
        key = f"dp-{alert_id}-resolved-{to_unix_ms(now)}-{channel}"
        connection.execute(
            insert_ignoring_conflicts(connection, notification_outbox),
            {
                "episode_id": alert_id,
                "channel": channel,
                "kind": "resolved",
                "idempotency_key": key,
                "payload": payload,
                "created_at": now,
                "next_attempt_at": now,
                "status": "pending",
            },
        )


def _episode(row: Any) -> Episode:
    return Episode(
        id=row.id,
        dealer_id=row.dealer_id,
        agent_id=row.agent_id,
        labels=tuple(sorted((str(k), str(v)) for k, v in (row.labels or {}).items())),
        rule_id=row.rule_id,
        type=row.type,
        severity=row.severity,
        state=row.state,
        message=row.message,
        value=row.value,
        threshold=row.threshold,
        started_at=row.started_at or row.created_at,
        resolved_at=row.resolved_at,
        acknowledged_by=row.acknowledged_by,
        acknowledged_at=row.acknowledged_at,
    )


# ---- silences


def create_silence(engine: Engine, spec: SilenceSpec, now: datetime) -> SilenceSpec:
    if spec.ends_at <= spec.starts_at:
        raise ValueError("ends_unix_ms: a silence must end after it starts")
    if spec.rule_id is not None:
        get_rule(engine, spec.rule_id)
    values = {
        "dealer_id": spec.dealer_id,
        "rule_id": spec.rule_id,
        "label_matchers": dict(spec.label_matchers),
        "starts_at": spec.starts_at,
        "ends_at": spec.ends_at,
        "created_by": spec.created_by,
        "comment": spec.comment,
        "created_at": now,
    }
    with _writing(engine, "creating a silence") as connection:
        inserted = connection.execute(silences.insert().returning(silences.c.id), values)
        return dataclasses.replace(spec, id=int(inserted.scalar_one()))


def list_silences(
    engine: Engine, now: datetime, dealer_id: str | None = None, include_expired: bool = False
) -> list[SilenceSpec]:
    query = select(silences).order_by(silences.c.id)
    if dealer_id is not None:
        query = query.where(silences.c.dealer_id == dealer_id)
    if not include_expired:
        query = query.where(silences.c.ends_at > now)
    with _reading(engine, "listing silences") as connection:
        return [_silence(row) for row in connection.execute(query)]


def get_silence(engine: Engine, silence_id: int) -> SilenceSpec:
    with _reading(engine, "reading a silence") as connection:
        row = connection.execute(select(silences).where(silences.c.id == silence_id)).first()
    if row is None:
        raise NotFound(f"no silence with id {silence_id}")
    return _silence(row)


def delete_silence(engine: Engine, silence_id: int) -> None:
    with _writing(engine, "deleting a silence") as connection:
        if connection.execute(delete(silences).where(silences.c.id == silence_id)).rowcount == 0:
            raise NotFound(f"no silence with id {silence_id}")


def _silence(row: Any) -> SilenceSpec:
    return SilenceSpec(
        dealer_id=row.dealer_id,
        rule_id=row.rule_id,
        label_matchers=tuple(sorted((str(k), str(v)) for k, v in row.label_matchers.items())),
        starts_at=row.starts_at,
        ends_at=row.ends_at,
        created_by=row.created_by,
        comment=row.comment,
        id=row.id,
    )


def silences_matching(
    connection: Connection, now: datetime, dealer_id: str | None, rule_id: int | None
) -> list[SilenceSpec]:
    """Silences in force at ``now`` that may cover an alert of this dealer and rule."""
    query = select(silences).where(
        silences.c.starts_at <= now,
        silences.c.ends_at > now,
        or_(silences.c.dealer_id.is_(None), silences.c.dealer_id == dealer_id),
        or_(silences.c.rule_id.is_(None), silences.c.rule_id == rule_id),
    )
    return [_silence(row) for row in connection.execute(query)]


def covers(spec: SilenceSpec, labels: Mapping[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in spec.label_matchers)
