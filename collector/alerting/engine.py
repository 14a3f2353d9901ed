"""One evaluation tick against the store, in one transaction.

For each enabled rule: observe the aggregate per subject, run the pure state
machine (:mod:`collector.alerting.evaluate`) against the stored state, and
write the state, the episode rows (system_alerts) and the notifications they
cause (notification_outbox) together. A crash before the commit leaves
nothing; after it, the dispatcher finds the notifications in the outbox.

Several collectors may share one PostgreSQL: a tick takes a transaction-level
advisory lock (SQLite: BEGIN IMMEDIATE), so ticks run one after the other and
the second finds the first one's states: a transition is written once, and the
outbox's unique idempotency key rejects any repeat of a notification.

The scheduled job passes :class:`~collector.alerting.ticks.SlotClaims`: the
tick then claims its time slot (after the lock, in the same transaction) and
skips when another collector already evaluated the slot, so N collectors make
one evaluation per interval, not N. Without claims (tests, one-off runs) a
tick evaluates unconditionally.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, delete, select, text, update

from collector.alerting.errors import RuleError
from collector.alerting.evaluate import (
    AlertState,
    Criteria,
    FlapPolicy,
    Notice,
    NoticeKind,
    Outcome,
    Phase,
    evaluate,
)
from collector.alerting.followup import write_follow_ups
from collector.alerting.policy import FollowUpPolicy
from collector.alerting.queries import Subject, agent_silence, observe
from collector.alerting.repository import load_rules
from collector.alerting.rules import Rule, RuleKind, Severity
from collector.alerting.ticks import SlotClaims, claim_slot, finish_slot, prune_slots
from collector.store.dialect import insert_ignoring_conflicts, upsert_insert
from collector.store.engine import WRITE_OPTION, translated_errors
from collector.store.schema import alert_states, notification_outbox, system_alerts
from collector.store.series import labels_from_json, labels_key
from dealerpulse.clock import Clock, from_unix_ms, to_unix_ms

logger = logging.getLogger(__name__)

# Any constant works; this one spells "dpalerts" in ASCII.
_TICK_LOCK_KEY = 0x6470616C65727473

# Fault injection for tests/alerting/test_crash.py, read once at start: with
# DEALERPULSE_FAILPOINT=alert-committed the process dies (exit 137, as if killed)
# right after a tick committed notifications, before any is sent. Unset: no effect.
_FAILPOINT = os.environ.get("DEALERPULSE_FAILPOINT", "")


@dataclass(frozen=True, slots=True)
class EngineSettings:
    # After the collector starts, agents count as heard from at the start.
    startup_grace: bool = True
    flap: FlapPolicy = field(default_factory=FlapPolicy)
    # Base of the links in notifications, e.g. https://pulse.example.com
    dashboard_url: str = ""
    # Repeats and escalation of open critical episodes.
    follow_up: FollowUpPolicy = field(default_factory=FollowUpPolicy)


@dataclass(frozen=True, slots=True)
class TickReport:
    rules: int = 0
    subjects: int = 0
    opened: int = 0
    closed: int = 0
    notifications: int = 0
    # Claimed ticks only: the slot evaluated, or None when another collector had it.
    slot_ms: int | None = None
    skipped: bool = False


@dataclass(frozen=True, slots=True)
class _Stored:
    state: AlertState
    episode_id: int | None


class AlertEngine:
    """Evaluates every enabled rule once per :meth:`tick`. Thread-safe."""

    def __init__(
        self, engine: Engine, clock: Clock, settings: EngineSettings | None = None
    ) -> None:
        self._engine = engine
        self._clock = clock
        self._settings = settings or EngineSettings()
        self._started_at = clock.now()

    def tick(self, claims: SlotClaims | None = None) -> TickReport:
        """Evaluate every enabled rule; with ``claims``, only if this tick's slot is free."""
        with translated_errors("evaluating alert rules"), self._engine.connect() as connection:
            connection.execution_options(**{WRITE_OPTION: True})
            with connection.begin():
                if connection.dialect.name == "postgresql":
                    connection.execute(
                        text("SELECT pg_advisory_xact_lock(:key)"), {"key": _TICK_LOCK_KEY}
                    )
                # Read after the lock: the slot is the one this evaluation runs in.
                now = self._clock.now()
                slot_ms: int | None = None
                if claims is not None:
                    slot_ms = claims.slot_of(now)
                    if not claim_slot(connection, slot_ms, claims.owner, now):
                        logger.debug("alert tick slot %s already evaluated: skipped", slot_ms)
                        return TickReport(slot_ms=slot_ms, skipped=True)
                    prune_slots(connection, slot_ms, claims.keep_s)
                totals = self._evaluate_all(connection, now)
                if slot_ms is not None:
                    finish_slot(connection, slot_ms, totals.rules, self._clock.now())
                    totals = _add(totals, TickReport(slot_ms=slot_ms))
        if totals.notifications and _FAILPOINT == "alert-committed":
            os._exit(137)
        if totals.opened or totals.closed:
            logger.info(
                "alert tick: %s opened, %s closed, %s notifications",
                totals.opened,
                totals.closed,
                totals.notifications,
            )
        return totals

    def _evaluate_all(self, connection: Connection, now: datetime) -> TickReport:
        totals = TickReport()
        rules = load_rules(connection)
        for rule in rules:
            try:
                totals = _add(totals, self._evaluate_rule(connection, rule, now))
            except RuleError as error:
                # Raised before any statement of the rule ran: one bad rule
                # must not stop the others.
                logger.error("alert rule %r skipped: %s", rule.name, error)
        follow_ups = self._follow_up(connection, rules, now)
        return _add(totals, TickReport(notifications=follow_ups))

    def _follow_up(self, connection: Connection, rules: list[Rule], now: datetime) -> int:
        by_id = {rule.id: rule for rule in rules if rule.id is not None}

        def make_payload(row: Any, kind: str, at: datetime) -> dict[str, Any] | None:
            rule = by_id.get(row.rule_id)
            if rule is None:
                return None
            subject = Subject(row.dealer_id, row.agent_id, labels_from_json(row.labels or {}))
            severity = Severity(row.severity)
            notice = Notice(NoticeKind(kind), severity, row.value, row.threshold, at)
            return _payload(rule, subject, row.id, notice, row.started_at, self._settings)

        channels = {rule_id: rule.channels for rule_id, rule in by_id.items()}
        return write_follow_ups(connection, channels, self._settings.follow_up, now, make_payload)

    def _evaluate_rule(self, connection: Connection, rule: Rule, now: datetime) -> TickReport:
        if rule.id is None:
            raise RuleError(f"rule {rule.name!r} has no id: evaluate stored rules only")
        if rule.kind is RuleKind.AGENT_SILENCE:
            grace = self._settings.startup_grace
            heard_since = self._started_at if grace else datetime.min.replace(tzinfo=UTC)
            observed = agent_silence(connection, rule.dealer_id, now, heard_since)
        else:
            observed = observe(connection, rule, now)
        stored = _load_states(connection, rule.id)
        criteria = Criteria(
            rule.condition.thresholds, rule.condition.comparator, rule.for_s, self._settings.flap
        )
        report = TickReport(rules=1)
        for subject in sorted(observed.keys() | stored.keys()):
            previous = stored.get(subject, _Stored(AlertState(), None))
            value = observed.get(subject)
            outcome = evaluate(previous.state, value, criteria, now)
            written = self._apply(connection, rule, subject, previous, value, outcome, now)
            report = _add(report, written)
        return report

    def _apply(
        self,
        connection: Connection,
        rule: Rule,
        subject: Subject,
        previous: _Stored,
        value: float | None,
        outcome: Outcome,
        now: datetime,
    ) -> TickReport:
        episode_id = previous.episode_id
        if outcome.opened:
            episode_id = _open_episode(connection, rule, subject, outcome, value, now)
        elif episode_id is not None and outcome.state.severity != previous.state.severity:
            _change_severity(connection, rule, episode_id, outcome, value, now)
        notices = 0
        if episode_id is not None:
            for notice in outcome.notices:
                notices += self._enqueue(connection, rule, subject, episode_id, notice, now)
        if outcome.closed and episode_id is not None:
            _close_episode(connection, episode_id, value, now)
            episode_id = None
        if outcome.state != previous.state or episode_id != previous.episode_id:
            _save_state(connection, rule, subject, outcome.state, episode_id, value, now)
        return TickReport(
            subjects=1,
            opened=int(outcome.opened),
            closed=int(outcome.closed),
            notifications=notices,
        )

    def _enqueue(
        self,
        connection: Connection,
        rule: Rule,
        subject: Subject,
        episode_id: int,
        notice: Notice,
        now: datetime,
    ) -> int:
        started_at = connection.scalar(
            select(system_alerts.c.started_at).where(system_alerts.c.id == episode_id)
        )
        payload = _payload(rule, subject, episode_id, notice, started_at, self._settings)
        written = 0
        for channel in rule.channels:
            key = f"dp-{episode_id}-{notice.kind.value}-{to_unix_ms(now)}-{channel}"
            row = {
                "episode_id": episode_id,
                "channel": channel,
                "kind": notice.kind.value,
                "idempotency_key": key,
                "payload": payload,
                "created_at": now,
                "next_attempt_at": now,
                "status": "pending",
            }
            # RETURNING, not rowcount: drivers disagree on rowcount for ON CONFLICT DO NOTHING.
            inserted = connection.execute(
                insert_ignoring_conflicts(connection, notification_outbox).returning(
                    notification_outbox.c.id
                ),
                row,
            ).first()
            written += inserted is not None
        return written


def _add(a: TickReport, b: TickReport) -> TickReport:
    return TickReport(
        rules=a.rules + b.rules,
        subjects=a.subjects + b.subjects,
        opened=a.opened + b.opened,
        closed=a.closed + b.closed,
        notifications=a.notifications + b.notifications,
        slot_ms=b.slot_ms if b.slot_ms is not None else a.slot_ms,
        skipped=a.skipped or b.skipped,
    )


def _load_states(connection: Connection, rule_id: int) -> dict[Subject, _Stored]:
    query = select(alert_states).where(alert_states.c.rule_id == rule_id)
    loaded: dict[Subject, _Stored] = {}
    for row in connection.execute(query):
        subject = Subject(row.dealer_id, row.agent_id, labels_from_json(row.labels))
        state = AlertState(
            phase=Phase(row.phase),
            severity=None if row.severity is None else Severity(row.severity),
            pending_since=row.pending_since,
            notified=row.notified,
            changes=tuple(from_unix_ms(int(ms)) for ms in row.flap_history),
            flapping=row.flapping,
        )
        loaded[subject] = _Stored(state, row.episode_id)
    return loaded


def _save_state(
    connection: Connection,
    rule: Rule,
    subject: Subject,
    state: AlertState,
    episode_id: int | None,
    value: float | None,
    now: datetime,
) -> None:
    key = {
        "rule_id": rule.id,
        "dealer_id": subject.dealer_id,
        "agent_id": subject.agent_id,
        "labels_key": labels_key(subject.labels),
    }
    if state == AlertState() and episode_id is None:
        # Back to a plain ok with no history: nothing worth keeping.
        connection.execute(
            delete(alert_states).where(*(alert_states.c[k] == v for k, v in key.items()))
        )
        return
    columns = {
        "labels": dict(subject.labels),
        "phase": state.phase.value,
        "severity": None if state.severity is None else state.severity.value,
        "pending_since": state.pending_since,
        "episode_id": episode_id,
        "notified": state.notified,
        "flap_history": [to_unix_ms(moment) for moment in state.changes],
        "flapping": state.flapping,
        "last_value": value,
        "evaluated_at": now,
    }
    statement = upsert_insert(connection, alert_states).values(**key, **columns)
    connection.execute(statement.on_conflict_do_update(index_elements=list(key), set_=columns))


def _message(rule: Rule, subject: Subject, severity: Severity | None, value: float | None) -> str:
    where = f"{subject.dealer_id}/{subject.agent_id}"
    if subject.labels:
        where += " " + ",".join(f"{k}={v}" for k, v in subject.labels)
    if rule.kind is RuleKind.AGENT_SILENCE:
        return f"{rule.name}: no data from agent {where} for {value or 0:.0f} s"
    condition = rule.condition
    shown = "no data" if value is None else f"{value:.4g}"
    level = "" if severity is None else f" ({severity.value})"
    return (
        f"{rule.name}: {condition.aggregation.value}({condition.metric}) over "
        f"{condition.window_s} s is {shown} on {where}{level}"
    )


def _open_episode(
    connection: Connection,
    rule: Rule,
    subject: Subject,
    outcome: Outcome,
    value: float | None,
    now: datetime,
) -> int:
    severity = outcome.state.severity
    threshold = None if severity is None else rule.condition.thresholds.trigger_of(severity)
    row: dict[str, Any] = {
        "dealer_id": subject.dealer_id,
        "type": rule.alert_type,
        "severity": "" if severity is None else severity.value,
        "message": _message(rule, subject, severity, value),
        "resolved": False,
        "created_at": now,
        "rule_id": rule.id,
        "agent_id": subject.agent_id,
        "labels": dict(subject.labels),
        "labels_key": labels_key(subject.labels),
        "value": value,
        "threshold": threshold,
        "state": "firing",
        "started_at": now,
        "last_change_at": now,
    }
    inserted = connection.execute(system_alerts.insert().returning(system_alerts.c.id), row)
    return int(inserted.scalar_one())


def _change_severity(
    connection: Connection,
    rule: Rule,
    episode_id: int,
    outcome: Outcome,
    value: float | None,
    now: datetime,
) -> None:
    severity = outcome.state.severity
    if severity is None:
        return
    values: dict[str, Any] = {
        "severity": severity.value,
        "threshold": rule.condition.thresholds.trigger_of(severity),
        "last_change_at": now,
    }
    if value is not None:
        values["value"] = value
    connection.execute(update(system_alerts).where(system_alerts.c.id == episode_id).values(values))


def _close_episode(
    connection: Connection, episode_id: int, value: float | None, now: datetime
) -> None:
    values: dict[str, Any] = {
        "resolved": True,
        "resolved_at": now,
        "state": "resolved",
        "last_change_at": now,
    }
    if value is not None:
        values["value"] = value
    connection.execute(update(system_alerts).where(system_alerts.c.id == episode_id).values(values))


def _payload(
    rule: Rule,
    subject: Subject,
    episode_id: int,
    notice: Notice,
    started_at: datetime | None,
    settings: EngineSettings,
) -> dict[str, Any]:
    """Everything a notifier renders, as JSON: the outbox row is self-contained."""
    condition = rule.condition
    base = settings.dashboard_url.rstrip("/")
    return {
        "episode_id": episode_id,
        "kind": notice.kind.value,
        "rule": rule.name,
        "rule_id": rule.id,
        "alert_type": rule.alert_type,
        "dealer_id": subject.dealer_id,
        "agent_id": subject.agent_id,
        "labels": dict(subject.labels),
        "severity": None if notice.severity is None else notice.severity.value,
        "metric": condition.metric,
        "aggregation": condition.aggregation.value,
        "window_s": condition.window_s,
        "comparator": condition.comparator.value,
        "value": notice.value,
        "threshold": notice.threshold,
        "since": None if started_at is None else started_at.isoformat(),
        "at": notice.at.isoformat(),
        "message": _message(rule, subject, notice.severity, notice.value),
        "dashboard_url": f"{base}/dealers/{subject.dealer_id}" if base else "",
        "resolved": notice.kind is NoticeKind.RESOLVED,
    }
