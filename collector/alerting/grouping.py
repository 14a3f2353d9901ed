"""Grouping due outbox rows: one message per (dealer, channel) for a burst of alerts.

A fresh row waits ``group_wait_s`` after it was written; rows of the same
dealer and channel that are due when the first one's wait ends go out with it
as one message. A row that was tried, held or retried before has waited
already and is ready at once. Each row keeps its own idempotency key; the
group's message carries all of them (Slack metadata) and a key of its own
derived from them (email Message-ID), so a resend of the same group is
recognisable.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol

GROUP_KIND = "group"


class Groupable(Protocol):
    @property
    def channel(self) -> str: ...
    @property
    def key(self) -> str: ...
    @property
    def payload(self) -> Mapping[str, Any]: ...


def group_of(payload: Mapping[str, Any], channel: str) -> tuple[str, str]:
    return (str(payload.get("dealer_id") or ""), channel)


def ready_at(row: Any, group_wait_s: float) -> datetime:
    """When a selected due row may go: a fresh one waits for its group to gather."""
    fresh = row.attempts == 0 and row.last_error is None
    if fresh:
        moment: datetime = row.created_at + timedelta(seconds=group_wait_s)
        return moment
    due: datetime = row.next_attempt_at
    return due


def ready_groups(rows: Sequence[Any], now: datetime, group_wait_s: float) -> list[list[Any]]:
    """The due rows (outbox rows, oldest first) whose group may be sent at ``now``."""
    groups: dict[tuple[str, str], list[Any]] = {}
    for row in rows:
        groups.setdefault(group_of(row.payload, row.channel), []).append(row)
    return [
        members
        for members in groups.values()
        if min(ready_at(row, group_wait_s) for row in members) <= now
    ]


def group_key(keys: Sequence[str]) -> str:
    digest = hashlib.sha256("\n".join(sorted(keys)).encode()).hexdigest()[:24]
    return f"dp-group-{digest}"


def group_payload(rows: Sequence[Groupable]) -> dict[str, Any]:
    """One payload listing each alert of the group (each alert's own payload and key)."""
    first = rows[0].payload
    alerts = [dict(row.payload) | {"idempotency_key": row.key} for row in rows]
    return {
        "kind": GROUP_KIND,
        "dealer_id": first.get("dealer_id"),
        "channel": rows[0].channel,
        "count": len(rows),
        "keys": [row.key for row in rows],
        "alerts": alerts,
        "dashboard_url": first.get("dashboard_url", ""),
    }
