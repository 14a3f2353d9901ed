"""Repeat and escalation notices of open critical episodes, written by the engine tick.

After the rules are evaluated, the tick looks at every open critical episode
whose firing was notified:

- Repeat: every ``repeat_interval_s`` since the episode started, one "repeat"
  row per channel of its rule, key ``dp-<episode>-repeat-<n>-<channel>``. A
  collector that was down for several intervals writes only the current ``n``:
  one reminder, not a burst.
- Escalation: ``escalate_after_s`` after the start of an episode nobody has
  acknowledged, one "escalation" row per escalation channel, key
  ``dp-<episode>-escalation-<channel>``: once per episode.

The keys are unique in the outbox, so several ticks (or collectors) write each
row once. An episode a silence covers now gets neither: a silence mutes
reminders rather than queueing them until it ends.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select

from collector.alerting.policy import FollowUpPolicy
from collector.alerting.silencing import covering_silence
from collector.store.dialect import insert_ignoring_conflicts
from collector.store.schema import alert_states, notification_outbox, system_alerts

logger = logging.getLogger(__name__)

CRITICAL = "critical"


@dataclass(frozen=True, slots=True)
class FollowUp:
    """One notice to write: the payload comes from the engine (it knows the rule)."""

    episode_id: int
    rule_id: int
    kind: str
    key_part: str
    channels: tuple[str, ...]


# Builds the outbox payload of a follow-up notice: (episode row, kind, now) -> JSON.
PayloadMaker = Callable[[Any, str, datetime], dict[str, Any] | None]


def due_follow_ups(
    connection: Connection,
    rule_channels: Mapping[int, Sequence[str]],
    policy: FollowUpPolicy,
    now: datetime,
) -> list[tuple[Any, FollowUp]]:
    """The (episode row, follow-up) pairs due at ``now``, before silences."""
    query = (
        select(system_alerts)
        .join(alert_states, alert_states.c.episode_id == system_alerts.c.id)
        .where(
            ~system_alerts.c.resolved,
            system_alerts.c.severity == CRITICAL,
            alert_states.c.notified,
        )
        .order_by(system_alerts.c.id)
    )
    due: list[tuple[Any, FollowUp]] = []
    for row in connection.execute(query):
        if row.rule_id not in rule_channels or row.started_at is None:
            continue
        elapsed_s = (now - row.started_at).total_seconds()
        repeats = int(elapsed_s // policy.repeat_interval_s)
        if repeats >= 1:
            channels = tuple(rule_channels[row.rule_id])
            due.append((row, FollowUp(row.id, row.rule_id, "repeat", str(repeats), channels)))
        if (
            policy.escalation_channels
            and row.acknowledged_at is None
            and elapsed_s >= policy.escalate_after_s
        ):
            due.append(
                (row, FollowUp(row.id, row.rule_id, "escalation", "", policy.escalation_channels))
            )
    return due


def write_follow_ups(
    connection: Connection,
    rule_channels: Mapping[int, Sequence[str]],
    policy: FollowUpPolicy,
    now: datetime,
    make_payload: PayloadMaker,
) -> int:
    """Write the due repeat and escalation rows; returns how many are new."""
    written = 0
    for row, follow_up in due_follow_ups(connection, rule_channels, policy, now):
        payload = make_payload(row, follow_up.kind, now)
        if payload is None or covering_silence(connection, now, payload) is not None:
            continue
        for channel in follow_up.channels:
            parts = [f"dp-{follow_up.episode_id}", follow_up.kind, follow_up.key_part, channel]
            key = "-".join(part for part in parts if part)
            written += _insert(connection, follow_up, channel, key, payload, now)
    if written:
        logger.info("alert follow-ups: %s repeat/escalation notifications written", written)
    return written


def _insert(
    connection: Connection,
    follow_up: FollowUp,
    channel: str,
    key: str,
    payload: dict[str, Any],
    now: datetime,
) -> int:
    row = {
        "episode_id": follow_up.episode_id,
        "channel": channel,
        "kind": follow_up.kind,
        "idempotency_key": key,
        "payload": payload,
        "created_at": now,
        "next_attempt_at": now,
        "status": "pending",
    }
    statement = insert_ignoring_conflicts(connection, notification_outbox).returning(
        notification_outbox.c.id
    )
    return int(connection.execute(statement, row).first() is not None)


__all__ = ["write_follow_ups"]
