"""Silences at send time: what the dispatcher does with a row a silence covers.

A silence covers an outbox row when it is in force at send time and its
dealer, rule and label matchers match the row's episode (kept in the row's
payload). The rule, in the order the dispatcher applies it:

1. Covered: the row is *held*: not sent, not dropped; it waits until the
   silence ends (re-checked at least every ``recheck_s``, so a silence deleted
   or shortened releases it early). The row's ``last_error`` says which silence
   holds it: that note is also how a later claim knows the row was held.
2. No longer covered, the row was held, its episode has been resolved and the
   episode's firing was never sent on this channel: the row and every pending
   row of the episode on that channel are dropped (recorded as ``failed`` with
   a ``silenced:`` reason): there is nothing to resolve.
3. Otherwise the row is sent as usual. A firing held through the silence of an
   episode still firing is thus sent when the silence ends, once (it is one
   row); a resolved held while its firing had been sent is sent too, so the
   channel does not show an alert firing for ever.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, select

from collector.alerting.manage import SilenceSpec, covers, silences_matching
from collector.store.schema import notification_outbox, system_alerts

HELD_NOTE = "held by silence"
DROPPED_NOTE = "silenced: episode resolved during a silence before its firing was sent"


@dataclass(frozen=True, slots=True)
class Hold:
    until: datetime
    note: str


def covering_silence(
    connection: Connection, now: datetime, payload: Mapping[str, Any]
) -> SilenceSpec | None:
    """The silence in force at ``now`` over this row's episode that ends last, if any."""
    dealer_id = payload.get("dealer_id")
    rule_id = payload.get("rule_id")
    labels = {str(k): str(v) for k, v in (payload.get("labels") or {}).items()}
    found = [
        spec
        for spec in silences_matching(connection, now, dealer_id, rule_id)
        if covers(spec, labels)
    ]
    return max(found, key=lambda spec: spec.ends_at, default=None)


def hold(spec: SilenceSpec, now: datetime, recheck_s: float) -> Hold:
    until = min(spec.ends_at, now + timedelta(seconds=recheck_s))
    return Hold(until, f"{HELD_NOTE} {spec.id} until {spec.ends_at.isoformat()}")


def was_held(last_error: str | None) -> bool:
    return bool(last_error) and str(last_error).startswith(HELD_NOTE)


def nothing_to_resolve(connection: Connection, episode_id: int, channel: str) -> bool:
    """The episode is over and its firing never reached ``channel``."""
    resolved = connection.scalar(
        select(system_alerts.c.resolved).where(system_alerts.c.id == episode_id)
    )
    if not resolved:
        return False
    sent_firing = connection.scalar(
        select(notification_outbox.c.id).where(
            notification_outbox.c.episode_id == episode_id,
            notification_outbox.c.channel == channel,
            notification_outbox.c.kind == "firing",
            notification_outbox.c.status == "sent",
        )
    )
    return sent_firing is None
