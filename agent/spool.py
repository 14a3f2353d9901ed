"""The agent's on-disk queue of unacknowledged batches (SQLite, WAL).

What it guarantees:

- seq numbers are assigned here, persisted in the same transaction as the
  batch, and never reused, also across restarts;
- the encoded bytes are stored, so a resend is byte-identical;
- it is bounded in bytes: when full it drops the OLDEST batches, and every
  drop is counted (by reason) and recorded as a gap that rides in the next
  batch built; a gap whose carrier is itself dropped goes back to pending;
- a gap is a run of consecutive seqs that were ALL lost (batches equals
  last_seq - first_seq + 1); consecutive losses of one reason merge into one;
- conservation: generated = stored (acked) + pending + dropped, where a
  "sample" is one Sample or one EndpointStat.

The file is opened in exclusive locking mode: a second agent on the same
spool would reuse seq numbers, so it gets SpoolBusy instead.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from agent.codec import encode_batch
from agent.errors import SpoolBusy, SpoolError
from agent.settings import DEFAULT_SPOOL_MAX_BYTES, validate_agent_id
from dealerpulse import __version__
from dealerpulse.clock import Clock, SystemClock, unix_ms
from dealerpulse.model import AgentCounters, EndpointStat, Gap, MetricBatch, Sample

logger = logging.getLogger(__name__)

# Bytes charged per stored batch on top of its payload: the row, the index
# entry and page slack, so many tiny batches cannot outgrow the bound.
ROW_OVERHEAD_BYTES = 128
SPOOL_FULL = "spool_full"
TOO_LARGE = "too_large"
REJECTED = "rejected"
# The disk refused a write (ENOSPC): the batch could not be stored at all.
DISK_FULL = "disk_full"
# Evictions free this much beyond what is needed, so that the gap row the
# eviction adds to the rebuilt batch does not force a second round.
_EVICTION_SLACK_BYTES = 4096
_MAX_BUILD_ROUNDS = 8
# SQLite page cache per spool connection, in KiB (see _connect).
_CACHE_KIB = 512

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS batches (
    seq INTEGER PRIMARY KEY,
    created_ms INTEGER NOT NULL,
    from_ms INTEGER NOT NULL,
    to_ms INTEGER NOT NULL,
    samples INTEGER NOT NULL,
    size INTEGER NOT NULL,
    payload BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS gaps (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    first_seq INTEGER NOT NULL,
    last_seq INTEGER NOT NULL,
    from_ms INTEGER NOT NULL,
    to_ms INTEGER NOT NULL,
    batches INTEGER NOT NULL,
    samples INTEGER NOT NULL,
    reason TEXT NOT NULL,
    carried_by INTEGER
);
CREATE INDEX IF NOT EXISTS gaps_carried_by ON gaps (carried_by);
"""


@dataclass(frozen=True, slots=True)
class SpooledBatch:
    seq: int
    payload: bytes
    samples: int
    created_ms: int


@dataclass(frozen=True, slots=True)
class BatchRef:
    seq: int
    size: int
    """Bytes of the encoded batch."""


@dataclass(frozen=True, slots=True)
class SpoolStats:
    bytes: int
    batches: int
    samples: int
    generated: int
    stored: int
    dropped: Mapping[str, int]

    @property
    def dropped_total(self) -> int:
        return sum(self.dropped.values())


@dataclass(frozen=True, slots=True)
class _Row:
    seq: int
    from_ms: int
    to_ms: int
    samples: int
    size: int


class SqliteSpool:
    """Unacknowledged batches on disk; see the module docstring for the guarantees."""

    def __init__(
        self,
        path: Path | str,
        max_bytes: int = DEFAULT_SPOOL_MAX_BYTES,
        clock: Clock | None = None,
        *,
        dealer_id: str,
        hostname: str = "",
        agent_id: str | None = None,
        boot_id: str | None = None,
        agent_version: str = __version__,
    ) -> None:
        if max_bytes <= 0:
            raise ValueError(f"spool max_bytes must be positive, got {max_bytes}")
        self.path = Path(path)
        self.max_bytes = max_bytes
        self._clock = clock or SystemClock()
        self._dealer_id = dealer_id
        self._hostname = hostname
        # os.urandom, not secrets: secrets imports hashlib, which loads libcrypto.
        self._boot_id = boot_id or os.urandom(16).hex()
        self._agent_version = agent_version
        self._db = _connect(self.path)
        # Samples of appends the disk refused, counted in the next write that succeeds.
        self._unrecorded_losses = 0
        try:
            self.agent_id = self._init_schema(agent_id)
            self._bytes, self._batches, self._samples = self._load_totals()
        except BaseException:
            self._db.close()
            raise

    # ---- lifecycle

    def close(self) -> None:
        try:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error as exc:
            logger.warning("spool %s: checkpoint at close failed: %s", self.path, exc)
        self._db.close()

    def __enter__(self) -> SqliteSpool:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def boot_id(self) -> str:
        return self._boot_id

    # ---- the operations

    def append(self, samples: Sequence[Sample], endpoints: Sequence[EndpointStat] = ()) -> int:
        """Build, encode and store one batch with its counters, atomically; returns its seq."""
        count = len(samples) + len(endpoints)
        carried = self._unrecorded_losses
        try:
            seq = self._append(samples, endpoints, count, carried)
        except SpoolError:
            # A full disk: nothing of the batch was written. Count it as soon as
            # a write succeeds, so the loss is visible, never silent.
            self._unrecorded_losses += count
            raise
        self._unrecorded_losses -= carried
        return seq

    def _append(
        self,
        samples: Sequence[Sample],
        endpoints: Sequence[EndpointStat],
        count: int,
        earlier_losses: int,
    ) -> int:
        created_ms = unix_ms(self._clock)
        from_ms, to_ms = _time_range(samples, endpoints, created_ms)
        with self._transaction(durable=True):
            seq = self._take_seq()
            self._bump("generated", count)
            if earlier_losses:
                self._bump("generated", earlier_losses)
                self._bump("dropped." + DISK_FULL, earlier_losses)
            for _ in range(_MAX_BUILD_ROUNDS):
                gaps = self._pending_gaps()
                payload = encode_batch(self._batch(seq, created_ms, samples, endpoints, gaps))
                size = len(payload) + ROW_OVERHEAD_BYTES
                if size > self.max_bytes:
                    self._drop_new(_Row(seq, from_ms, to_ms, count, size), TOO_LARGE)
                    return seq
                overflow = self._bytes + size - self.max_bytes
                if overflow <= 0:
                    break
                self._evict(overflow + _EVICTION_SLACK_BYTES)
            else:
                self._drop_new(_Row(seq, from_ms, to_ms, count, size), SPOOL_FULL)
                return seq
            self._db.execute(
                "INSERT INTO batches VALUES (?, ?, ?, ?, ?, ?, ?)",
                (seq, created_ms, from_ms, to_ms, count, size, payload),
            )
            self._db.execute("UPDATE gaps SET carried_by = ? WHERE carried_by IS NULL", (seq,))
            self._bytes, self._batches, self._samples = (
                self._bytes + size,
                self._batches + 1,
                self._samples + count,
            )
        return seq

    def pending(self, after_seq: int | None = None, limit: int = 100) -> list[SpooledBatch]:
        """Unacknowledged batches with seq > after_seq, oldest first."""
        rows = self._db.execute(
            "SELECT seq, payload, samples, created_ms FROM batches WHERE seq > ? "
            "ORDER BY seq LIMIT ?",
            (-1 if after_seq is None else after_seq, limit),
        ).fetchall()
        return [SpooledBatch(seq, bytes(payload), n, created) for seq, payload, n, created in rows]

    def next_after(self, after_seq: int | None) -> BatchRef | None:
        """The oldest unacknowledged batch after after_seq, without its payload."""
        row = self._db.execute(
            "SELECT seq, length(payload) FROM batches WHERE seq > ? ORDER BY seq LIMIT 1",
            (-1 if after_seq is None else after_seq,),
        ).fetchone()
        return None if row is None else BatchRef(row[0], row[1])

    def load(self, seq: int) -> SpooledBatch | None:
        row = self._db.execute(
            "SELECT seq, payload, samples, created_ms FROM batches WHERE seq = ?", (seq,)
        ).fetchone()
        return None if row is None else SpooledBatch(row[0], bytes(row[1]), row[2], row[3])

    def ack(self, seq: int) -> bool:
        """The collector has the batch (stored or duplicate): forget it. False if unknown."""
        # Not fsynced: losing an ack only causes a resend that dedup absorbs.
        with self._transaction(durable=False):
            # The gaps it carried are delivered: delete them before _remove()
            # would hand them back as pending.
            self._db.execute("DELETE FROM gaps WHERE carried_by = ?", (seq,))
            row = self._remove(seq)
            if row is None:
                return False
            self._bump("stored", row.samples)
        return True

    def reject(self, seq: int, reason: str = REJECTED) -> bool:
        """The collector refused the batch for good: drop it, count it, record a gap."""
        with self._transaction(durable=True):
            row = self._remove(seq)
            if row is None:
                return False
            self._drop_rows([row], reason)
        return True

    def stats(self) -> SpoolStats:
        counters = dict(self._db.execute("SELECT name, value FROM counters").fetchall())
        dropped = {
            name.removeprefix("dropped."): value
            for name, value in counters.items()
            if name.startswith("dropped.")
        }
        return SpoolStats(
            bytes=self._bytes,
            batches=self._batches,
            samples=self._samples,
            generated=counters.get("generated", 0),
            stored=counters.get("stored", 0),
            dropped=dropped,
        )

    # ---- building

    def _batch(
        self,
        seq: int,
        created_ms: int,
        samples: Sequence[Sample],
        endpoints: Sequence[EndpointStat],
        gaps: tuple[Gap, ...],
    ) -> MetricBatch:
        stats = self.stats()
        counters = AgentCounters(
            generated_samples=stats.generated,
            dropped_samples=tuple(sorted(stats.dropped.items())),
            spool_bytes=self._bytes,
            spool_batches=self._batches,
        )
        return MetricBatch(
            agent_id=self.agent_id,
            dealer_id=self._dealer_id,
            seq=seq,
            boot_id=self._boot_id,
            hostname=self._hostname,
            agent_version=self._agent_version,
            created_ms=created_ms,
            samples=tuple(samples),
            endpoints=tuple(endpoints),
            gaps=gaps,
            counters=counters,
        )

    def _pending_gaps(self) -> tuple[Gap, ...]:
        rows = self._db.execute(
            "SELECT first_seq, last_seq, from_ms, to_ms, batches, samples, reason "
            "FROM gaps WHERE carried_by IS NULL ORDER BY first_seq, id"
        ).fetchall()
        return tuple(Gap(*row) for row in rows)

    def _take_seq(self) -> int:
        (value,) = self._db.execute("SELECT value FROM meta WHERE key = 'next_seq'").fetchone()
        seq = int(value)
        self._db.execute("UPDATE meta SET value = ? WHERE key = 'next_seq'", (str(seq + 1),))
        return seq

    # ---- dropping

    def _evict(self, needed_bytes: int) -> None:
        """Drop the oldest batches until needed_bytes are freed (or the spool is empty)."""
        victims: list[_Row] = []
        freed = 0
        for row in self._db.execute(
            "SELECT seq, from_ms, to_ms, samples, size FROM batches ORDER BY seq"
        ):
            victims.append(_Row(*row))
            freed += victims[-1].size
            if freed >= needed_bytes:
                break
        for victim in victims:
            self._remove(victim.seq)
        if victims:
            logger.warning(
                "spool %s full: dropped %s oldest batches (seq %s..%s)",
                self.path,
                len(victims),
                victims[0].seq,
                victims[-1].seq,
            )
            self._drop_rows(victims, SPOOL_FULL)

    def _drop_new(self, row: _Row, reason: str) -> None:
        logger.warning(
            "spool %s: batch seq %s (%s bytes) dropped: %s", self.path, row.seq, row.size, reason
        )
        self._drop_rows([row], reason)

    def _drop_rows(self, rows: Sequence[_Row], reason: str) -> None:
        self._bump("dropped." + reason, sum(row.samples for row in rows))
        for run in _contiguous_runs(rows):
            self._record_gap(run, reason)

    def _record_gap(self, run: Sequence[_Row], reason: str) -> None:
        """Record lost seqs first..last (all of them lost: a gap has no holes)."""
        first, last = run[0].seq, run[-1].seq
        from_ms, to_ms = min(r.from_ms for r in run), max(r.to_ms for r in run)
        samples = sum(r.samples for r in run)
        # Extend a pending gap that ends right before this one, so a long
        # outage yields one gap rather than one per interval.
        previous = self._db.execute(
            "SELECT id FROM gaps WHERE carried_by IS NULL AND reason = ? AND last_seq = ?",
            (reason, first - 1),
        ).fetchone()
        if previous is not None:
            self._db.execute(
                "UPDATE gaps SET last_seq = ?, from_ms = MIN(from_ms, ?), to_ms = MAX(to_ms, ?), "
                "batches = batches + ?, samples = samples + ? WHERE id = ?",
                (last, from_ms, to_ms, len(run), samples, previous[0]),
            )
        else:
            self._db.execute(
                "INSERT INTO gaps (first_seq, last_seq, from_ms, to_ms, batches, samples, reason) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (first, last, from_ms, to_ms, len(run), samples, reason),
            )

    def _remove(self, seq: int) -> _Row | None:
        """Delete a stored batch; the gaps it carried become pending again."""
        found = self._db.execute(
            "SELECT seq, from_ms, to_ms, samples, size FROM batches WHERE seq = ?", (seq,)
        ).fetchone()
        if found is None:
            return None
        row = _Row(*found)
        self._db.execute("DELETE FROM batches WHERE seq = ?", (seq,))
        self._db.execute("UPDATE gaps SET carried_by = NULL WHERE carried_by = ?", (seq,))
        self._bytes -= row.size
        self._batches -= 1
        self._samples -= row.samples
        return row

    def _bump(self, name: str, amount: int) -> None:
        self._db.execute(
            "INSERT INTO counters (name, value) VALUES (?, ?) "
            "ON CONFLICT (name) DO UPDATE SET value = value + excluded.value",
            (name, amount),
        )

    # ---- storage plumbing

    @contextmanager
    def _transaction(self, *, durable: bool) -> Iterator[None]:
        """One SQLite transaction; on failure the in-memory totals are re-read from disk."""
        try:
            self._db.execute("PRAGMA synchronous = " + ("FULL" if durable else "NORMAL"))
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise SpoolError(f"spool {self.path}: cannot start a transaction: {exc}") from exc
        try:
            yield
            self._db.execute("COMMIT")
        except BaseException as exc:
            # SQLite rolls back by itself on some errors (SQLITE_FULL): then there is
            # nothing left to roll back, and ROLLBACK itself would raise.
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            self._bytes, self._batches, self._samples = self._load_totals()
            if isinstance(exc, sqlite3.Error):
                raise SpoolError(f"spool {self.path}: write failed: {exc}") from exc
            raise

    def _init_schema(self, agent_id: str | None) -> str:
        if agent_id is not None:
            validate_agent_id(agent_id)
        with self._transaction(durable=True):
            self._create_tables()
            self._db.execute("INSERT OR IGNORE INTO meta VALUES ('next_seq', '1')")
            if agent_id is None and self._stored_agent_id() is None:
                agent_id = _new_agent_id()
            if agent_id is not None:
                self._db.execute("INSERT OR REPLACE INTO meta VALUES ('agent_id', ?)", (agent_id,))
            stored = self._stored_agent_id()
        assert stored is not None  # written above in this transaction
        return stored

    def _stored_agent_id(self) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = 'agent_id'").fetchone()
        return None if row is None else str(row[0])

    def _create_tables(self) -> None:
        # executescript() would COMMIT our transaction, so run statements one by one.
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                self._db.execute(statement)

    def _load_totals(self) -> tuple[int, int, int]:
        size, batches, samples = self._db.execute(
            "SELECT COALESCE(SUM(size), 0), COUNT(*), COALESCE(SUM(samples), 0) FROM batches"
        ).fetchone()
        return int(size), int(batches), int(samples)


def _connect(path: Path) -> sqlite3.Connection:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(path, isolation_level=None, timeout=0.2)
    except (OSError, sqlite3.Error) as exc:
        raise SpoolError(f"cannot open spool {path}: {exc}") from exc
    try:
        mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        db.execute("PRAGMA locking_mode = EXCLUSIVE")
        # SQLite's default page cache grows to 2 MiB, a twentieth of the agent's
        # RSS budget; rows are read once, by key, so a small cache costs nothing.
        db.execute(f"PRAGMA cache_size = -{_CACHE_KIB}")
        # Take the lock now, not at the first write: a second agent fails at start.
        db.execute("BEGIN IMMEDIATE")
        db.execute("COMMIT")
    except sqlite3.OperationalError as exc:
        db.close()
        if "locked" in str(exc):
            raise SpoolBusy(f"spool {path} is in use by another agent process") from exc
        raise SpoolError(f"cannot open spool {path}: {exc}") from exc
    except sqlite3.DatabaseError as exc:
        db.close()
        raise SpoolError(f"spool {path} is not a usable SQLite database: {exc}") from exc
    if mode != "wal":
        logger.warning("spool %s: journal mode is %s, not WAL", path, mode)
    return db


def _contiguous_runs(rows: Sequence[_Row]) -> list[list[_Row]]:
    runs: list[list[_Row]] = []
    for row in sorted(rows, key=lambda r: r.seq):
        if runs and runs[-1][-1].seq == row.seq - 1:
            runs[-1].append(row)
        else:
            runs.append([row])
    return runs


def _time_range(
    samples: Sequence[Sample], endpoints: Sequence[EndpointStat], default_ms: int
) -> tuple[int, int]:
    times = [s.time_ms for s in samples]
    times += [e.start_ms for e in endpoints] + [e.end_ms for e in endpoints]
    return (min(times), max(times)) if times else (default_ms, default_ms)


def _new_agent_id() -> str:
    # uuid (and the platform module it loads) is needed once per spool, not per run.
    import uuid

    return str(uuid.uuid4())
