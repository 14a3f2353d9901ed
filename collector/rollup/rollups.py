"""The rollup job: read the dirty marks, recompute their minutes, delete the marks.

One run, under the maintenance lock (:mod:`collector.rollup.lock`):

1. read up to ``marks_per_pass`` marks (agent, minute, generation), oldest first;
2. group them into per-agent ranges and recompute each range in its own
   short write transaction (:func:`collector.rollup.compute.recompute`);
3. delete each mark whose generation is still the one read, in key order
   (the writer upserts marks in key order too: no deadlock). A mark bumped
   meanwhile stays, and the next pass or run recomputes its minute again.

Nothing here reads a mark's raw rows before the mark itself, so a row is
either seen by the recompute or leaves its mark bumped. Marks older than the
raw retention are dropped without recomputing: their raw rows may be gone, and
recomputing would wipe good rollups.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy import Connection, Delete, Engine, and_, bindparam, delete, select

from collector.rollup.compute import AgentRange, RecomputeCounts, ranges_of, recompute
from collector.rollup.lock import maintenance_lock
from collector.store.engine import WRITE_OPTION, translated_errors
from collector.store.schema import rollup_dirty
from dealerpulse.clock import to_unix_ms

logger = logging.getLogger(__name__)

DAY_MS = 86_400_000


@dataclass(frozen=True, slots=True)
class RollupSettings:
    marks_per_pass: int = 2000
    # A run stops after this many passes; what is left waits for the next run.
    max_passes: int = 50
    raw_retention_days: int = 30
    # Ranges of one agent are at most this long (bounds one write transaction).
    max_range_minutes: int = 60
    # Marked minutes this close together are recomputed as one range.
    join_gap_minutes: int = 5


@dataclass(frozen=True, slots=True)
class RollupReport:
    skipped: bool = False  # another collector held the lock
    marks: int = 0
    ranges: int = 0
    samples: int = 0
    endpoint_rows: int = 0
    minute_rows: int = 0
    hour_rows: int = 0
    expired_marks: int = 0
    left_marks: int = 0  # marks bumped meanwhile, or beyond max_passes
    seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class _Mark:
    agent_id: str
    bucket_ms: int
    dealer_id: str
    generation: int


class RollupRunner:
    """Thread-safe; each :meth:`run` is one job run."""

    def __init__(self, engine: Engine, settings: RollupSettings | None = None) -> None:
        self._engine = engine
        self._settings = settings or RollupSettings()

    def run(self, now: datetime) -> RollupReport:
        started = time.monotonic()
        with translated_errors("rolling up metrics"), maintenance_lock(self._engine) as held:
            if not held:
                logger.info("rollup skipped: another collector holds the maintenance lock")
                return RollupReport(skipped=True)
            report = self._passes(now)
        seconds = time.monotonic() - started
        if report.marks:
            logger.info(
                "rollup: %s marks, %s samples and %s endpoint rows in %.2f s",
                report.marks,
                report.samples,
                report.endpoint_rows,
                seconds,
            )
        return replace(report, seconds=seconds)

    def _passes(self, now: datetime) -> RollupReport:
        settings = self._settings
        cutoff_ms = to_unix_ms(now) - settings.raw_retention_days * DAY_MS
        totals = RecomputeCounts()
        marks = ranges = expired = left = 0
        seen: set[tuple[str, int, int]] = set()
        for _ in range(settings.max_passes):
            # A mark read before with the same generation is one this run could
            # not delete; skipping it bounds the run.
            batch = [m for m in self._read_marks() if _identity(m) not in seen]
            if not batch:
                break
            seen.update(_identity(m) for m in batch)
            live = [m for m in batch if m.bucket_ms >= cutoff_ms]
            expired += len(batch) - len(live)
            work = ranges_of(
                ((m.agent_id, m.dealer_id, m.bucket_ms) for m in live),
                max_span_ms=settings.max_range_minutes * 60_000,
                max_gap_ms=settings.join_gap_minutes * 60_000,
            )
            for agent_range in work:
                totals.add(self._recompute(agent_range))
            left += len(batch) - self._delete_marks(batch)
            marks += len(batch)
            ranges += len(work)
        return RollupReport(
            marks=marks,
            ranges=ranges,
            samples=totals.samples,
            endpoint_rows=totals.endpoint_rows,
            minute_rows=totals.minute_rows,
            hour_rows=totals.hour_rows,
            expired_marks=expired,
            left_marks=left,
        )

    def _read_marks(self) -> list[_Mark]:
        d = rollup_dirty.c
        query = (
            select(d.agent_id, d.bucket_ms, d.dealer_id, d.generation)
            .order_by(d.bucket_ms, d.agent_id)
            .limit(self._settings.marks_per_pass)
        )
        with self._engine.connect() as connection:
            return [_Mark(*row) for row in connection.execute(query)]

    def _recompute(self, work: AgentRange) -> RecomputeCounts:
        with self._engine.connect() as connection:
            connection.execution_options(**{WRITE_OPTION: True})
            with connection.begin():
                return recompute(connection, work)

    def _delete_marks(self, batch: list[_Mark]) -> int:
        """Delete the marks not bumped since they were read; how many went."""
        d = rollup_dirty.c
        statement = delete(rollup_dirty).where(
            and_(
                d.agent_id == bindparam("m_agent"),
                d.bucket_ms == bindparam("m_bucket"),
                d.generation == bindparam("m_generation"),
            )
        )
        ordered = sorted(batch, key=lambda m: (m.agent_id, m.bucket_ms))
        deleted = 0
        with self._engine.connect() as connection:
            connection.execution_options(**{WRITE_OPTION: True})
            with connection.begin():
                # One statement per mark keeps the lock order; rowcount of an
                # executemany is not reliable across drivers.
                for mark in ordered:
                    deleted += _delete_one(connection, statement, mark)
        return deleted


def _delete_one(connection: Connection, statement: Delete, mark: _Mark) -> int:
    result = connection.execute(
        statement,
        {"m_agent": mark.agent_id, "m_bucket": mark.bucket_ms, "m_generation": mark.generation},
    )
    return max(result.rowcount, 0)


def _identity(mark: _Mark) -> tuple[str, int, int]:
    return mark.agent_id, mark.bucket_ms, mark.generation
