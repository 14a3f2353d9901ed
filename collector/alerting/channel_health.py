"""The built-in "notification channel failing" alert.

A channel that refuses a message for good (a 4xx: a revoked token, a deleted
Slack channel) opens an episode about the channel itself (system_alerts type
``channel_failing``, no rule, label ``channel``), notified to every OTHER
configured channel. The channel's next successful send resolves it, and the
channels told of the failure are told of the recovery. Each is written in the
transaction that records the send's result; one open episode per channel.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select, update

from collector.store.dialect import insert_ignoring_conflicts
from collector.store.schema import notification_outbox, system_alerts
from collector.store.series import labels_key
from dealerpulse.clock import to_unix_ms

logger = logging.getLogger(__name__)

CHANNEL_FAILING = "channel_failing"
RULE_NAME = "notification channel failing"


def _key_of(channel: str) -> str:
    return labels_key((("channel", channel),))


def _open_episode_id(connection: Connection, channel: str) -> int | None:
    found = connection.scalar(
        select(system_alerts.c.id).where(
            system_alerts.c.type == CHANNEL_FAILING,
            system_alerts.c.labels_key == _key_of(channel),
            ~system_alerts.c.resolved,
        )
    )
    return None if found is None else int(found)


def open_channel_alert(
    connection: Connection, channel: str, error: str, others: Sequence[str], now: datetime
) -> int | None:
    """Open the channel's failing episode unless one is open; returns its id if new."""
    if _open_episode_id(connection, channel) is not None:
        return None
    message = f"notification channel {channel!r} is failing: {error}"
    inserted = connection.execute(
        system_alerts.insert().returning(system_alerts.c.id),
        {
            "dealer_id": None,
            "type": CHANNEL_FAILING,
            "severity": "critical",
            "message": message,
            "resolved": False,
            "created_at": now,
            "labels": {"channel": channel},
            "labels_key": _key_of(channel),
            "state": "firing",
            "started_at": now,
            "last_change_at": now,
        },
    )
    episode_id = int(inserted.scalar_one())
    logger.error("alert %s: %s", episode_id, message)
    payload = _payload(episode_id, channel, "firing", message, now, now)
    for other in others:
        _enqueue(connection, episode_id, other, "firing", payload, now)
    return episode_id


def close_channel_alert(connection: Connection, channel: str, now: datetime) -> bool:
    """Resolve the channel's failing episode, if open, telling whoever was told it fired."""
    episode_id = _open_episode_id(connection, channel)
    if episode_id is None:
        return False
    connection.execute(
        update(system_alerts)
        .where(system_alerts.c.id == episode_id)
        .values(resolved=True, resolved_at=now, state="resolved", last_change_at=now)
    )
    told = connection.execute(
        select(notification_outbox.c.channel, notification_outbox.c.payload).where(
            notification_outbox.c.episode_id == episode_id,
            notification_outbox.c.kind == "firing",
        )
    ).all()
    message = f"notification channel {channel!r} works again"
    for other, firing in told:
        since = datetime.fromisoformat(str(firing["since"]))
        payload = _payload(episode_id, channel, "resolved", message, since, now)
        _enqueue(connection, episode_id, other, "resolved", payload, now)
    logger.info("alert %s resolved: %s", episode_id, message)
    return True


def _payload(
    episode_id: int, channel: str, kind: str, message: str, since: datetime, now: datetime
) -> dict[str, Any]:
    # The keys every template reads, so the generic templates render it.
    return {
        "episode_id": episode_id,
        "kind": kind,
        "rule": RULE_NAME,
        "rule_id": None,
        "alert_type": CHANNEL_FAILING,
        "dealer_id": None,
        "agent_id": None,
        "labels": {"channel": channel},
        "severity": "critical",
        "metric": "notification.channel",
        "aggregation": "state",
        "window_s": 0,
        "comparator": None,
        "value": None,
        "threshold": None,
        "since": since.isoformat(),
        "at": now.isoformat(),
        "message": message,
        "dashboard_url": "",
        "resolved": kind == "resolved",
    }


def _enqueue(
    connection: Connection,
    episode_id: int,
    channel: str,
    kind: str,
    payload: dict[str, Any],
    now: datetime,
) -> None:
    connection.execute(
        insert_ignoring_conflicts(connection, notification_outbox),
        {
            "episode_id": episode_id,
            "channel": channel,
            "kind": kind,
            "idempotency_key": f"dp-{episode_id}-{kind}-{to_unix_ms(now)}-{channel}",
            "payload": payload,
            "created_at": now,
            "next_attempt_at": now,
            "status": "pending",
        },
    )
