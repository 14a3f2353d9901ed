"""Tick slots: each alert evaluation tick is claimed once across collectors.

Time is cut into slots of ``alert_interval_s`` (slot start = floor(now /
interval), from the injected clock). The scheduled tick inserts its slot into
``alert_ticks`` inside the evaluation's own transaction, after the advisory
lock: if the row already exists, another collector has evaluated this slot and
the tick does nothing. Because the claim commits together with the
evaluation, a collector that dies mid-tick leaves no claim behind, and the
next collector that ticks in the same slot (typically already waiting on the
lock) evaluates it instead.
"""

from __future__ import annotations

import math
import os
import socket
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, delete, update

from collector.store.dialect import insert_ignoring_conflicts
from collector.store.schema import alert_ticks
from dealerpulse.clock import to_unix_ms

# Slots older than this are deleted as ticks go by: a day of history to look at.
DEFAULT_KEEP_S = 86_400.0
_OWNER_MAX = 128


def default_owner() -> str:
    """Who claims: host and process, enough to find the collector in its logs."""
    return f"{socket.gethostname()}:{os.getpid()}"[-_OWNER_MAX:]


@dataclass(frozen=True, slots=True)
class SlotClaims:
    """How a tick claims its slot: the slot length, the claimant, how long rows are kept."""

    interval_s: float
    owner: str
    keep_s: float = DEFAULT_KEEP_S

    def __post_init__(self) -> None:
        if not (math.isfinite(self.interval_s) and self.interval_s >= 0.001):
            raise ValueError(f"interval_s: must be at least 0.001 s, got {self.interval_s!r}")
        if not self.owner or len(self.owner) > _OWNER_MAX:
            raise ValueError(f"owner: must be 1-{_OWNER_MAX} characters, got {self.owner!r}")
        if not (math.isfinite(self.keep_s) and self.keep_s >= self.interval_s):
            raise ValueError(f"keep_s: must be at least interval_s, got {self.keep_s!r}")

    @property
    def interval_ms(self) -> int:
        return max(1, round(self.interval_s * 1000))

    def slot_of(self, now: datetime) -> int:
        """The Unix ms at which the slot holding ``now`` starts."""
        return slot_start_ms(to_unix_ms(now), self.interval_ms)


def slot_start_ms(now_ms: int, interval_ms: int) -> int:
    if interval_ms <= 0:
        raise ValueError(f"interval_ms: must be positive, got {interval_ms}")
    return (now_ms // interval_ms) * interval_ms


def claim_slot(connection: Connection, slot_ms: int, owner: str, now: datetime) -> bool:
    """Insert the slot's row in the caller's transaction; False: it was already claimed."""
    row = {"slot_ms": slot_ms, "claimed_by": owner, "claimed_at": now}
    # RETURNING, not rowcount: drivers disagree on rowcount for ON CONFLICT DO NOTHING.
    inserted = connection.execute(
        insert_ignoring_conflicts(connection, alert_ticks).returning(alert_ticks.c.slot_ms), row
    ).first()
    return inserted is not None


def finish_slot(connection: Connection, slot_ms: int, rules: int, now: datetime) -> None:
    connection.execute(
        update(alert_ticks)
        .where(alert_ticks.c.slot_ms == slot_ms)
        .values(finished_at=now, rules=rules)
    )


def prune_slots(connection: Connection, slot_ms: int, keep_s: float) -> None:
    """Delete the slots older than ``keep_s`` before ``slot_ms`` (an index range, cheap)."""
    oldest_kept = slot_ms - round(keep_s * 1000)
    connection.execute(delete(alert_ticks).where(alert_ticks.c.slot_ms < oldest_kept))
