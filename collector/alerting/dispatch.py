"""Sends due outbox rows through their channel's notifier and records the result.

A claim pushes a row's ``next_attempt_at`` a lease into the future and counts
the attempt, in its own short transaction (PostgreSQL: ``FOR UPDATE SKIP
LOCKED``, so several dispatchers split the rows); the send happens outside
any transaction, and its result is recorded after. A dispatcher that dies
mid-send leaves the row to come back when the lease ends; that resend first
asks the channel whether the message arrived (:meth:`Notifier.find_sent`),
where the channel can be asked. A row waits while an earlier row of its
episode and channel is unsent, so a resolved never overtakes its firing.
A row that a silence covers at send time is held, or dropped once there is
nothing left to say (:mod:`collector.alerting.silencing` has the rule).

Guarantee: every outbox row is sent at least once unless the channel refuses
it (recorded as ``failed`` with the error) or it runs out of attempts; a
duplicate needs a crash between a successful send and its record, and then
carries the same idempotency key as the first copy.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, and_, exists, select, update
from sqlalchemy.orm import aliased

from collector.alerting.abc import Notifier, OutgoingMessage, Receipt
from collector.alerting.channel_health import close_channel_alert, open_channel_alert
from collector.alerting.errors import PermanentSendError, RetryableSendError
from collector.alerting.grouping import GROUP_KIND, group_key, group_payload, ready_groups
from collector.alerting.silencing import (
    DROPPED_NOTE,
    covering_silence,
    hold,
    nothing_to_resolve,
    was_held,
)
from collector.store.engine import WRITE_OPTION, translated_errors
from collector.store.schema import notification_outbox
from dealerpulse.clock import Clock

logger = logging.getLogger(__name__)

outbox = notification_outbox

# Fault injection for tests/alerting/test_crash.py, read once at start: with
# DEALERPULSE_FAILPOINT=notification-sent the process dies (exit 137, as if killed)
# right after a successful send, before it is recorded. Unset: no effect.
_FAILPOINT = os.environ.get("DEALERPULSE_FAILPOINT", "")


@dataclass(frozen=True, slots=True)
class DispatchPolicy:
    # A claimed row is hidden this long: longer than any send may take.
    lease_s: float = 120.0
    # 5 s doubling to 15 min: 16 attempts span about 2 h 6 min, so a channel down
    # for an hour or two still gets the message (8 gave up after 10.6 min).
    max_attempts: int = 16
    base_backoff_s: float = 5.0
    max_backoff_s: float = 900.0
    batch_size: int = 50
    # A row held by a silence is looked at again at least this often (a silence may be deleted).
    silence_recheck_s: float = 60.0
    # A dealer's first notification waits this long for others to go out as one message.
    # 0 for a bare Dispatcher; the collector passes alert_group_wait_s (default 30 s).
    group_wait_s: float = 0.0

    def backoff_s(self, attempts: int, retry_after_s: float | None) -> float:
        """Delay before attempt ``attempts + 1``; a server's Retry-After always wins if longer."""
        exponential = min(self.max_backoff_s, self.base_backoff_s * 2.0 ** max(0, attempts - 1))
        return max(exponential, retry_after_s or 0.0)


@dataclass(frozen=True, slots=True)
class DispatchReport:
    sent: int = 0
    found_sent: int = 0
    retrying: int = 0
    failed: int = 0
    held: int = 0
    dropped: int = 0


@dataclass(frozen=True, slots=True)
class _Claimed:
    id: int
    episode_id: int
    channel: str
    kind: str
    key: str
    payload: Mapping[str, Any]
    # Attempts before this one: > 0 means an earlier attempt may have delivered it.
    earlier_attempts: int
    last_error: str | None = None


@dataclass
class _Tally:
    counts: dict[str, int] = field(default_factory=dict)

    def add(self, outcome: str) -> None:
        self.counts[outcome] = self.counts.get(outcome, 0) + 1

    def report(self) -> DispatchReport:
        return DispatchReport(**self.counts)


class Dispatcher:
    """Call :meth:`run_once` from a scheduled job; each call sends what is due now."""

    def __init__(
        self,
        engine: Engine,
        notifiers: Mapping[str, Notifier],
        clock: Clock,
        policy: DispatchPolicy | None = None,
    ) -> None:
        self._engine = engine
        self._notifiers = dict(notifiers)
        self._clock = clock
        self._policy = policy or DispatchPolicy()

    def run_once(self) -> DispatchReport:
        tally = _Tally()
        for group in self._claim():
            for outcome in self._deliver_group(group):
                tally.add(outcome)
        return tally.report()

    # ---- claiming

    def _claim(self) -> list[list[_Claimed]]:
        """Claim the due rows whose (dealer, channel) group may go now, grouped."""
        now = self._clock.now()
        with translated_errors("claiming notifications"), self._writing() as connection:
            due = connection.execute(self._due_query(connection, now)).all()
            groups = ready_groups(due, now, self._policy.group_wait_s)
            rows = [row for group in groups for row in group]
            if not rows:
                return []
            connection.execute(
                update(outbox)
                .where(outbox.c.id.in_([row.id for row in rows]))
                .values(
                    next_attempt_at=now + timedelta(seconds=self._policy.lease_s),
                    attempts=outbox.c.attempts + 1,
                )
            )
        return [
            [
                _Claimed(
                    row.id,
                    row.episode_id,
                    row.channel,
                    row.kind,
                    row.idempotency_key,
                    row.payload,
                    row.attempts,
                    row.last_error,
                )
                for row in group
            ]
            for group in groups
        ]

    def _due_query(self, connection: Connection, now: datetime) -> Any:
        earlier = aliased(outbox)
        blocked = exists().where(
            earlier.c.episode_id == outbox.c.episode_id,
            earlier.c.channel == outbox.c.channel,
            earlier.c.id < outbox.c.id,
            earlier.c.status == "pending",
        )
        query = (
            select(outbox)
            .where(and_(outbox.c.status == "pending", outbox.c.next_attempt_at <= now), ~blocked)
            .order_by(outbox.c.id)
            .limit(self._policy.batch_size)
        )
        if connection.dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True, of=outbox)
        return query

    # ---- delivering

    def _deliver_group(self, group: list[_Claimed]) -> list[str]:
        """Send one (dealer, channel) group: one row as itself, several as one message."""
        notifier = self._notifiers.get(group[0].channel)
        if notifier is None:
            known = ", ".join(sorted(self._notifiers)) or "none"
            for row in group:
                self._record_failure(
                    row, f"no notifier configured for channel {row.channel!r} ({known})"
                )
            return ["failed"] * len(group)
        outcomes: list[str] = []
        sendable: list[_Claimed] = []
        for row in group:
            silenced = self._apply_silences(row)
            if silenced is None:
                sendable.append(row)
            else:
                outcomes.append(silenced)
        if len(sendable) == 1:
            outcomes.append(self._deliver(sendable[0], notifier))
        elif sendable:
            outcomes.extend(self._deliver_many(sendable, notifier))
        return outcomes

    def _deliver_many(self, rows: list[_Claimed], notifier: Notifier) -> list[str]:
        payload = group_payload(rows)
        message = OutgoingMessage(group_key(payload["keys"]), GROUP_KIND, payload)
        count = len(rows)
        if any(row.earlier_attempts > 0 for row in rows):
            found = notifier.find_sent(message)
            if found is not None:
                logger.info("notification group %s had arrived already", message.idempotency_key)
                for row in rows:
                    self._record_sent(row, found)
                return ["found_sent"] * count
        try:
            receipt = notifier.send(message)
        except RetryableSendError as error:
            return [self._record_retry(row, str(error), error.retry_after_s) for row in rows]
        except PermanentSendError as error:
            for row in rows:
                self._record_failure(row, str(error), permanent=True)
            return ["failed"] * count
        except Exception as error:  # a notifier bug must not stop the other rows
            logger.exception("notifier for channel %s failed unexpectedly", rows[0].channel)
            text = f"unexpected {type(error).__name__}: {error}"
            return [self._record_retry(row, text, None) for row in rows]
        if _FAILPOINT == "notification-sent":
            os._exit(137)
        for row in rows:
            self._record_sent(row, receipt)
        return ["sent"] * count

    def _deliver(self, row: _Claimed, notifier: Notifier) -> str:
        message = OutgoingMessage(row.key, row.kind, row.payload, self._thread_ref(row))
        if row.earlier_attempts > 0:
            found = notifier.find_sent(message)
            if found is not None:
                logger.info("notification %s had arrived already; not resending", row.key)
                self._record_sent(row, found)
                return "found_sent"
        try:
            receipt = notifier.send(message)
        except RetryableSendError as error:
            return self._record_retry(row, str(error), error.retry_after_s)
        except PermanentSendError as error:
            self._record_failure(row, str(error), permanent=True)
            return "failed"
        except Exception as error:  # a notifier bug must not stop the other rows
            logger.exception("notifier for channel %s failed unexpectedly", row.channel)
            return self._record_retry(row, f"unexpected {type(error).__name__}: {error}", None)
        if _FAILPOINT == "notification-sent":
            os._exit(137)
        self._record_sent(row, receipt)
        return "sent"

    def _apply_silences(self, row: _Claimed) -> str | None:
        """Hold or drop a row as :mod:`collector.alerting.silencing` says; None: send it."""
        now = self._clock.now()
        with translated_errors("checking silences"), self._engine.connect() as connection:
            spec = covering_silence(connection, now, row.payload)
            drop = spec is None and (
                was_held(row.last_error)
                and nothing_to_resolve(connection, row.episode_id, row.channel)
            )
        if spec is not None:
            held = hold(spec, now, self._policy.silence_recheck_s)
            logger.info("notification %s held by silence %s", row.key, spec.id)
            # The claim counted an attempt: a held row has not been attempted.
            self._update(
                row,
                next_attempt_at=held.until,
                attempts=row.earlier_attempts,
                last_error=held.note,
            )
            return "held"
        if drop:
            logger.info("notification %s dropped: %s", row.key, DROPPED_NOTE)
            self._drop_episode_rows(row)
            return "dropped"
        return None

    def _drop_episode_rows(self, row: _Claimed) -> None:
        statement = (
            update(outbox)
            .where(
                outbox.c.episode_id == row.episode_id,
                outbox.c.channel == row.channel,
                outbox.c.status == "pending",
            )
            .values(status="failed", last_error=DROPPED_NOTE)
        )
        with translated_errors("dropping silenced notifications"), self._writing() as connection:
            connection.execute(statement)

    def _thread_ref(self, row: _Claimed) -> str | None:
        if row.kind == "firing":
            return None
        query = select(outbox.c.receipt).where(
            outbox.c.episode_id == row.episode_id,
            outbox.c.channel == row.channel,
            outbox.c.kind == "firing",
            outbox.c.status == "sent",
        )
        with translated_errors("reading a thread reference"), self._engine.connect() as connection:
            return connection.scalar(query)

    def _record_sent(self, row: _Claimed, receipt: Receipt) -> None:
        now = self._clock.now()
        with translated_errors("recording a notification"), self._writing() as connection:
            connection.execute(
                self._row_update(
                    row, status="sent", sent_at=now, receipt=receipt.ref, last_error=None
                )
            )
            # A success ends the channel's own failing alert, in the same transaction.
            close_channel_alert(connection, row.channel, now)

    def _record_retry(self, row: _Claimed, error: str, retry_after_s: float | None) -> str:
        attempts = row.earlier_attempts + 1
        if attempts >= self._policy.max_attempts:
            self._record_failure(row, f"gave up after {attempts} attempts: {error}")
            return "failed"
        delay_s = self._policy.backoff_s(attempts, retry_after_s)
        logger.warning(
            "notification %s to %s failed (attempt %s), retrying in %.0f s: %s",
            row.key,
            row.channel,
            attempts,
            delay_s,
            error,
        )
        next_attempt = self._clock.now() + timedelta(seconds=delay_s)
        self._update(row, next_attempt_at=next_attempt, last_error=error)
        return "retrying"

    def _record_failure(self, row: _Claimed, error: str, *, permanent: bool = False) -> None:
        """Record a row as failed; a channel's refusal (``permanent``) raises its own alert."""
        logger.error("notification %s to %s failed for good: %s", row.key, row.channel, error)
        others = sorted(name for name in self._notifiers if name != row.channel)
        with translated_errors("recording a notification"), self._writing() as connection:
            connection.execute(self._row_update(row, status="failed", last_error=error))
            if permanent:
                open_channel_alert(connection, row.channel, error, others, self._clock.now())

    def _update(self, row: _Claimed, **values: Any) -> None:
        with translated_errors("recording a notification"), self._writing() as connection:
            connection.execute(self._row_update(row, **values))

    @staticmethod
    def _row_update(row: _Claimed, **values: Any) -> Any:
        return (
            update(outbox)
            .where(outbox.c.id == row.id, outbox.c.status == "pending")
            .values(**values)
        )

    def _writing(self) -> AbstractContextManager[Connection]:
        return _write_transaction(self._engine)


@contextmanager
def _write_transaction(engine: Engine) -> Iterator[Connection]:
    """A connection in a write transaction (SQLite: BEGIN IMMEDIATE), committed on exit."""
    with engine.connect() as connection:
        connection.execution_options(**{WRITE_OPTION: True})
        with connection.begin():
            yield connection
