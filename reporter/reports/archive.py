"""The ``reports`` table: claims, stored renderings, delivery state, and reads.

A scheduled report is claimed by inserting its row first (``claim_key`` is
unique, so one collector wins and every other one, or a restart, sees the
row), generated outside any transaction, then filled. A row that stays
``generating`` longer than the lease (its collector died) is taken over
with a compare-and-set on ``owner``; so is a delivery stuck in ``sending``.
"""

from __future__ import annotations

import builtins
import logging
import secrets
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, exc, func, select, update

from collector.store.engine import WRITE_OPTION, translated_errors
from collector.store.errors import StoreWriteError
from collector.store.schema import reports
from reporter.model import ReportFormat, ReportRecord, TimeRange

logger = logging.getLogger(__name__)

DEFAULT_LEASE = timedelta(minutes=30)
_BODY_COLUMNS = {
    ReportFormat.HTML: reports.c.body_html,
    ReportFormat.JSON: reports.c.body_json,
    ReportFormat.TEXT: reports.c.body_text,
}
_LISTED = (
    reports.c.id,
    reports.c.dealer_id,
    reports.c.period,
    reports.c.period_start,
    reports.c.period_end,
    reports.c.created_at,
    reports.c.title,
)


def new_owner() -> str:
    """A claim's token: who holds a row, checked on every write that follows."""
    return secrets.token_hex(8)


def claim_key(period: str, dealer_id: str | None, start: datetime) -> str:
    return f"{period}/{dealer_id or '*'}/{start.isoformat()}"


@dataclass(frozen=True, slots=True)
class Claim:
    report_id: int
    owner: str


@dataclass(frozen=True, slots=True)
class Renderings:
    html: str
    json: str
    text: str


@dataclass(frozen=True, slots=True)
class PendingDelivery:
    report_id: int
    dealer_id: str | None
    title: str
    delivered_channels: tuple[str, ...]
    attempts: int


class ReportArchive:
    """Stored reports: what the reporter lists and serves, and the jobs' claims."""

    def __init__(self, engine: Engine, lease: timedelta = DEFAULT_LEASE) -> None:
        self._engine = engine
        self._lease = lease

    # ---- reads (the reporter service)

    def list(self, dealer_id: str | None, limit: int = 50) -> list[ReportRecord]:
        """Finished reports, newest first, without bodies; ``None``: every dealer's."""
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        query = (
            select(*_LISTED)
            .where(reports.c.status == "ready")
            .order_by(reports.c.created_at.desc(), reports.c.id.desc())
            .limit(limit)
        )
        if dealer_id is not None:
            query = query.where(reports.c.dealer_id == dealer_id)
        with translated_errors("listing reports"), self._engine.connect() as connection:
            rows = connection.execute(query).all()
        return [_record(row, ReportFormat.HTML, b"") for row in rows]

    def get(self, report_id: int, fmt: ReportFormat | None = None) -> ReportRecord | None:
        """A finished report with its body in ``fmt`` (default HTML); None if there is none."""
        wanted = ReportFormat(fmt) if fmt is not None else ReportFormat.HTML
        body = _BODY_COLUMNS[wanted]
        query = select(*_LISTED, body.label("body")).where(
            reports.c.id == report_id, reports.c.status == "ready"
        )
        with translated_errors("reading a report"), self._engine.connect() as connection:
            row = connection.execute(query).first()
        if row is None or row.body is None:
            return None
        return _record(row, wanted, str(row.body).encode("utf-8"))

    def last_period_end(self, dealer_id: str, period: str, now: datetime) -> datetime | None:
        """The end of the newest scheduled report of a dealer and period, made or claimed.

        A claim left ``generating`` past its lease does not count: its period
        comes due again, and :meth:`take_over_stale` hands it to the caller.
        """
        abandoned = (reports.c.status == "generating") & (reports.c.claimed_at < now - self._lease)
        query = select(func.max(reports.c.period_end)).where(
            reports.c.dealer_id == dealer_id,
            reports.c.period == period,
            reports.c.claim_key.is_not(None),
            ~abandoned,
        )
        with translated_errors("reading the last report"), self._engine.connect() as connection:
            value: datetime | None = connection.scalar(query)
        return value

    # ---- claims and fills (the generator and the jobs)

    def claim(
        self,
        *,
        dealer_id: str | None,
        period: str,
        time_range: TimeRange,
        key: str | None,
        timezone: str,
        title: str,
        now: datetime,
    ) -> Claim | None:
        """Insert the report's row; None when ``key`` is taken (made or being made elsewhere)."""
        owner = new_owner()
        values: dict[str, Any] = {
            "dealer_id": dealer_id,
            "period": period,
            "period_start": time_range.start,
            "period_end": time_range.end,
            "claim_key": key,
            "timezone": timezone,
            "title": title,
            "status": "generating",
            "owner": owner,
            "claimed_at": now,
            "created_at": now,
            "delivered_channels": [],
        }
        try:
            with self._write() as connection:
                report_id = connection.execute(
                    reports.insert().values(values).returning(reports.c.id)
                ).scalar_one()
        except StoreWriteError as error:
            # A unique violation on the claim key: made or being made elsewhere.
            clash = isinstance(error.__cause__, exc.IntegrityError)
            if clash and key is not None and self._key_taken(key):
                return None
            raise
        return Claim(int(report_id), owner)

    def take_over_stale(self, key: str, now: datetime) -> Claim | None:
        """The claim of a row left ``generating`` past the lease, if there is one."""
        with translated_errors("reading a report claim"), self._engine.connect() as connection:
            row = connection.execute(
                select(reports.c.id, reports.c.owner, reports.c.claimed_at).where(
                    reports.c.claim_key == key, reports.c.status == "generating"
                )
            ).first()
        if row is None or row.claimed_at > now - self._lease:
            return None
        owner = new_owner()
        taken = self._compare_and_set(
            row.id, row.owner, {"owner": owner, "claimed_at": now}, status="generating"
        )
        if taken:
            logger.warning(
                "report %s was left unfinished by its collector; making it again", row.id
            )
            return Claim(int(row.id), owner)
        return None

    def fill(self, claim: Claim, renderings: Renderings, now: datetime, deliver: bool) -> bool:
        """Store the renderings; False if the claim was lost (someone else took over)."""
        return self._compare_and_set(
            claim.report_id,
            claim.owner,
            {
                "body_html": renderings.html,
                "body_json": renderings.json,
                "body_text": renderings.text,
                "status": "ready",
                "finished_at": now,
                "delivery": "pending" if deliver else "none",
            },
            status="generating",
        )

    def fail(self, claim: Claim, error: str, now: datetime) -> None:
        self._compare_and_set(
            claim.report_id,
            claim.owner,
            {"status": "failed", "finished_at": now, "last_error": error[:2000]},
            status="generating",
        )

    # ---- delivery

    def pending_deliveries(self, now: datetime, limit: int = 20) -> builtins.list[PendingDelivery]:
        """Ready reports waiting to be sent, or whose sender died mid-send."""
        stale = now - self._lease
        query = (
            select(
                reports.c.id,
                reports.c.dealer_id,
                reports.c.title,
                reports.c.delivered_channels,
                reports.c.delivery_attempts,
            )
            .where(
                reports.c.status == "ready",
                (reports.c.delivery == "pending")
                | ((reports.c.delivery == "sending") & (reports.c.claimed_at < stale)),
            )
            .order_by(reports.c.id)
            .limit(limit)
        )
        with translated_errors("reading reports to deliver"), self._engine.connect() as connection:
            rows = connection.execute(query).all()
        return [
            PendingDelivery(
                int(row.id),
                row.dealer_id,
                row.title,
                tuple(row.delivered_channels or ()),
                int(row.delivery_attempts),
            )
            for row in rows
        ]

    def claim_delivery(self, report_id: int, now: datetime) -> Claim | None:
        with translated_errors("reading a report delivery"), self._engine.connect() as connection:
            row = connection.execute(
                select(reports.c.owner, reports.c.delivery, reports.c.claimed_at).where(
                    reports.c.id == report_id
                )
            ).first()
        if row is None:
            return None
        stale = row.delivery == "sending" and row.claimed_at < now - self._lease
        if row.delivery != "pending" and not stale:
            return None
        owner = new_owner()
        changes = {"owner": owner, "claimed_at": now, "delivery": "sending"}
        if self._compare_and_set(report_id, row.owner, changes, delivery=row.delivery):
            return Claim(report_id, owner)
        return None

    def record_delivery(
        self,
        claim: Claim,
        delivered: Sequence[str],
        outcome: str,
        error: str | None,
        attempts: int,
    ) -> None:
        """``outcome``: 'sent', 'pending' (retry later) or 'failed' (given up)."""
        self._compare_and_set(
            claim.report_id,
            claim.owner,
            {
                "delivery": outcome,
                "delivered_channels": sorted(set(delivered)),
                "delivery_attempts": attempts,
                "last_error": error[:2000] if error else None,
            },
            delivery="sending",
        )

    # ---- helpers

    def _key_taken(self, key: str) -> bool:
        with translated_errors("reading a report claim"), self._engine.connect() as connection:
            return (
                connection.scalar(select(reports.c.id).where(reports.c.claim_key == key))
                is not None
            )

    def _compare_and_set(
        self, report_id: int, owner: str, changes: dict[str, Any], **expected: str
    ) -> bool:
        condition = (reports.c.id == report_id) & (reports.c.owner == owner)
        for column, value in expected.items():
            condition &= reports.c[column] == value
        with self._write() as connection:
            result = connection.execute(update(reports).where(condition).values(changes))
        return result.rowcount == 1

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        """A write transaction (SQLite: BEGIN IMMEDIATE), database errors as StoreError."""
        with translated_errors("writing a report"), self._engine.connect() as connection:
            connection.execution_options(**{WRITE_OPTION: True})
            with connection.begin():
                yield connection


def _record(row: Any, fmt: ReportFormat, body: bytes) -> ReportRecord:
    return ReportRecord(
        report_id=int(row.id),
        dealer_id=row.dealer_id,
        period=row.period,
        range=TimeRange(row.period_start, row.period_end),
        format=fmt,
        created_at=row.created_at,
        title=row.title,
        body=body,
    )
