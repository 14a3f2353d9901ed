"""The agent's on-disk queue of unacknowledged batches (SQLite, WAL).

What it guarantees:

- seq numbers are assigned here, persisted in the same transaction as the
  batch, and never reused, also across restarts;
- the encoded bytes are stored, so a resend is byte-identical;
- the sample form (rows or columns) is chosen when a batch is encoded, from
  the last collector's Hello (remembered across restarts, rows until a
  collector has said it reads columns), and is part of the stored bytes;
- it is bounded in bytes: when full it drops the OLDEST batches, and every
  drop is counted (by reason) and recorded as a gap that rides in the next
  batch built; a gap whose carrier is itself dropped goes back to pending;
- a gap is a run of consecutive seqs that were ALL lost (batches equals
  last_seq - first_seq + 1); consecutive losses of one reason merge into one;
- an append the disk refuses (full disk) stores nothing, not even its seq:
  the next append that succeeds gives each refused batch a seq and records
  them as a 'disk_full' gap, so that loss is counted and reported too;
- conservation: generated = stored (acked) + pending + dropped, where a
  "sample" is one Sample or one EndpointStat;
- a disk that fills and stays full does not wedge it (issue 7): see
  "A full disk" below.

A full disk. In WAL mode a write goes to the WAL first and reaches the
database file at the next checkpoint, which must grow the file for new pages:
if the WAL holds pages the full disk cannot take (a checkpoint "debt"), the
WAL cannot restart, so even an ack (a DELETE, no new page) needs new WAL room
and fails. Three rules keep the spool able to drain:

- the debt stays small: a commit that leaves pages beyond the end of the file
  is checkpointed at once, and while such a checkpoint fails appends are
  refused, so the debt is at most one batch (2 MiB) plus a few pages;
- a reserve file (``<spool>-reserve``, RESERVE_BYTES) is held next to the
  spool while the disk has room. A write that frees room (ack, reject,
  note_sent) refused by a full disk is retried after a checkpoint; if that
  fails too, the reserve is deleted, the checkpoint (its debt paid from the
  reserve's room) done and the write retried: the restarted WAL then takes
  the acks, the acked batches' pages go to SQLite's freelist and later appends
  reuse them. An opening that fails on a full disk deletes it and retries.
  Appends never spend the reserve, so it is there for the drain; it comes back
  when the disk has RESERVE_BYTES of room beyond it;
- without a reserve an append may add debt only if the disk has room for it
  twice (WAL frames and checkpoint) plus a margin, else it is refused.

Locking mode is set before the first WAL access, so the WAL index lives in
memory: no ``-shm`` file, whose creation failed on a full disk ("disk I/O
error"), and opening writes nothing when nothing changed.

The file is opened in exclusive locking mode: a second agent on the same
spool would reuse seq numbers, so it gets SpoolBusy instead.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TypeVar

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
# sent_forms bits: which encodings of a batch have gone out (agent/shipper.py).
SENT_AS_STORED = 1
SENT_AS_ROWS_OF_COLUMNS = 2
# meta key: "1" when new batches carry their samples as columns.
_COLUMNS_KEY = "sample_columns"
# SQLite page cache per spool connection, in KiB (see _connect).
_CACHE_KIB = 512
# The reserve file kept next to the spool for draining on a full disk. It must
# hold the largest checkpoint debt (one batch: agent.batching caps a batch at
# 2 MiB, plus b-tree pages) and the WAL frames of the acks that follow (the
# rest: ~450 WAL frames of 4 KiB). Measured (100 samples a batch, 5.7 KB): an
# append adds 1-2 pages and writes 6-7 WAL frames, an ack writes 5-8 frames.
RESERVE_BYTES = 4 * 1024 * 1024
# Without a reserve, the room an append's debt must leave free on the disk.
_NO_RESERVE_MARGIN_BYTES = 256 * 1024
_T = TypeVar("_T")

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
CREATE TABLE IF NOT EXISTS sent_forms (seq INTEGER PRIMARY KEY, forms INTEGER NOT NULL);
"""


class SpoolDiskFull(SpoolError):
    """The disk (or the page cap) refused a write: SQLITE_FULL, or no room for its checkpoint."""


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


@dataclass(frozen=True, slots=True)
class _Refused:
    """Appends the disk refused since the last one that succeeded (kept in memory only)."""

    batches: int
    samples: int
    from_ms: int
    to_ms: int

    def plus(self, other: _Refused | None) -> _Refused:
        if other is None:
            return self
        return _Refused(
            self.batches + other.batches,
            self.samples + other.samples,
            min(self.from_ms, other.from_ms),
            max(self.to_ms, other.to_ms),
        )

    def gap(self, first_seq: int) -> Gap:
        last_seq = first_seq + self.batches - 1
        return Gap(
            first_seq, last_seq, self.from_ms, self.to_ms, self.batches, self.samples, DISK_FULL
        )


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
        reserve_bytes: int = RESERVE_BYTES,
    ) -> None:
        """reserve_bytes: the reserve file for a full disk (0: none, e.g. many agents in a test)."""
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
        self._reserve = _Reserve(self.path.with_name(self.path.name + "-reserve"), reserve_bytes)
        # Recorded (counted, and as a gap) by the next append that succeeds.
        self._refused: _Refused | None = None
        # True while a checkpoint the disk refused is due (see "A full disk").
        self._checkpoint_owed = False
        self._db = self._open(agent_id)
        self._reserve.ensure()

    def _open(self, agent_id: str | None) -> sqlite3.Connection:
        """Connect and read the state; on a full disk spend the reserve and try once more."""
        try:
            return self._connect_and_load(agent_id)
        except SpoolError as exc:
            if not _may_be_disk_full(exc) or not self._spend_reserve(f"opening failed: {exc}"):
                raise
        return self._connect_and_load(agent_id)

    def _connect_and_load(self, agent_id: str | None) -> sqlite3.Connection:
        self._db = _connect(self.path)
        try:
            self._page_size = int(self._db.execute("PRAGMA page_size").fetchone()[0])
            # A debt left by the last run (its checkpoint refused) is paid now if it can be.
            self._settle_debt()
            self.agent_id = self._init_schema(agent_id)
            self._columnar = self._meta(_COLUMNS_KEY) == "1"
            self._bytes, self._batches, self._samples = self._load_totals()
        except BaseException:
            self._db.close()
            raise
        return self._db

    # ---- lifecycle

    def close(self) -> None:
        self._record_refused_at_close()
        try:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error as exc:
            logger.warning("spool %s: checkpoint at close failed: %s", self.path, exc)
        self._db.close()

    def _record_refused_at_close(self) -> None:
        """Record refused appends as a pending gap now: the count lives in memory only.

        Without the reserve, which is kept for the drain of the next run.
        """
        refused = self._refused
        if refused is None:
            return
        try:
            with self._transaction(durable=True):
                self._record_refused(refused)
        except SpoolError as exc:
            logger.warning(
                "spool %s: %s samples in %s batches the disk refused are lost uncounted "
                "at close: %s",
                self.path,
                refused.samples,
                refused.batches,
                exc,
            )
        self._refused = None

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

    def limit_pages(self, max_pages: int) -> None:
        """Cap the database at max_pages SQLite pages for this connection.

        A write beyond the cap fails with SQLITE_FULL, the very error of a full
        disk: the test seam that fills "the disk" without privileges. SQLite
        keeps the cap at no less than the file's current size.
        """
        self._db.execute(f"PRAGMA max_page_count = {int(max_pages)}")

    @property
    def sample_columns(self) -> bool:
        return self._columnar

    def use_sample_columns(self, accepted: bool) -> None:
        """Encode the samples of batches appended from now on as columns, or not.

        The shipper calls this with what each collector's Hello reply says.
        Stored batches keep the form they were encoded in (their bytes never
        change); the shipper turns columns into rows for a rows-only collector.
        Persisted, so batches built after a restart, before any connection,
        take the form the collector last asked for.
        """
        if accepted == self._columnar:
            return
        self._columnar = accepted
        logger.info("spool %s: new batches carry samples as %s", self.path, _form(accepted))
        # Not fsynced, and a failure (a full disk) is only logged: a lost flag only
        # means batches in the other form after a restart, which every collector
        # reads (rows) or the shipper converts (columns).
        try:
            with self._transaction(durable=False):
                self._db.execute(
                    "INSERT OR REPLACE INTO meta VALUES (?, ?)",
                    (_COLUMNS_KEY, "1" if accepted else "0"),
                )
        except SpoolError as exc:
            logger.warning("spool %s: cannot remember the sample form: %s", self.path, exc)

    # ---- the operations

    def append(self, samples: Sequence[Sample], endpoints: Sequence[EndpointStat] = ()) -> int:
        """Build, encode and store one batch with its counters, atomically; returns its seq."""
        count = len(samples) + len(endpoints)
        try:
            seq = self._append_on_a_disk_that_may_be_full(samples, endpoints, count)
        except SpoolError:
            # A full disk: nothing of the batch was written. Record it as soon as
            # a write succeeds, so the loss is visible, never silent.
            from_ms, to_ms = _time_range(samples, endpoints, unix_ms(self._clock))
            self._refused = _Refused(1, count, from_ms, to_ms).plus(self._refused)
            raise
        if self._refused is not None:
            # Logged only now: the transaction that records them could have failed too.
            logger.warning(
                "spool %s: %s samples in %s batches the disk refused are recorded as a %s gap "
                "(seq %s..%s)",
                self.path,
                self._refused.samples,
                self._refused.batches,
                DISK_FULL,
                seq - self._refused.batches,
                seq - 1,
            )
            self._refused = None
        self._reserve.ensure()
        return seq

    def _append_on_a_disk_that_may_be_full(
        self, samples: Sequence[Sample], endpoints: Sequence[EndpointStat], count: int
    ) -> int:
        """_append, refused while a checkpoint is owed; retried once after a checkpoint."""
        if self._checkpoint_owed and not self._checkpoint():
            # Another batch in the WAL would grow the debt the reserve must pay.
            raise SpoolDiskFull(f"spool {self.path}: disk full, a checkpoint is still owed")
        try:
            return self._append(samples, endpoints, count, self._refused)
        except SpoolDiskFull:
            # A full WAL that a checkpoint lets restart (pages reused from the
            # freelist need no room); appends never spend the reserve.
            if not self._checkpoint():
                raise
        return self._append(samples, endpoints, count, self._refused)

    def _append(
        self,
        samples: Sequence[Sample],
        endpoints: Sequence[EndpointStat],
        count: int,
        refused: _Refused | None,
    ) -> int:
        created_ms = unix_ms(self._clock)
        from_ms, to_ms = _time_range(samples, endpoints, created_ms)
        with self._transaction(durable=True):
            if refused is not None:
                self._record_refused(refused)
            seq = self._take_seq()
            self._bump("generated", count)
            for _ in range(_MAX_BUILD_ROUNDS):
                gaps = self._pending_gaps()
                batch = self._batch(seq, created_ms, samples, endpoints, gaps)
                payload = encode_batch(batch, columnar=self._columnar)
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
            self._check_room_for_the_debt()
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
        return self._drain_write(lambda: self._ack(seq))

    def _ack(self, seq: int) -> bool:
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
        return self._drain_write(lambda: self._reject(seq, reason))

    def _reject(self, seq: int, reason: str) -> bool:
        with self._transaction(durable=True):
            row = self._remove(seq)
            if row is None:
                return False
            self._drop_rows([row], reason)
        return True

    def note_sent(self, seq: int, form: int) -> None:
        """Record that the batch goes out in ``form`` (a SENT_AS_* bit), before it is written.

        Lets the shipper tell a batch that went out in both of its encodings
        (see :meth:`sent_forms`) from a seq truly reused; it must survive a
        restart, as an ack lost with the connection can.
        """
        # Spends the reserve: on a wedged spool the first write of a drain is this one.
        self._drain_write(lambda: self._note_sent(seq, form))

    def _note_sent(self, seq: int, form: int) -> None:
        # Not fsynced: a lost note turns a later form conflict into a counted
        # rejection, never into a loss that goes unreported.
        with self._transaction(durable=False):
            self._db.execute(
                "INSERT INTO sent_forms VALUES (?, ?) "
                "ON CONFLICT (seq) DO UPDATE SET forms = forms | excluded.forms",
                (seq, form),
            )

    def sent_forms(self, seq: int) -> int:
        """The SENT_AS_* bits of the forms the batch went out in (0: none recorded)."""
        row = self._db.execute("SELECT forms FROM sent_forms WHERE seq = ?", (seq,)).fetchone()
        return 0 if row is None else int(row[0])

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

    def _take_seq(self, count: int = 1) -> int:
        """Reserve count consecutive seqs; the first of them."""
        (value,) = self._db.execute("SELECT value FROM meta WHERE key = 'next_seq'").fetchone()
        seq = int(value)
        self._db.execute("UPDATE meta SET value = ? WHERE key = 'next_seq'", (str(seq + count),))
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
            self._record_gap(_gap_of(run, reason))

    def _record_refused(self, refused: _Refused) -> None:
        """The refused appends get the seqs they would have had, before this append's."""
        first = self._take_seq(refused.batches)
        self._bump("generated", refused.samples)
        self._bump("dropped." + DISK_FULL, refused.samples)
        self._record_gap(refused.gap(first))

    def _record_gap(self, gap: Gap) -> None:
        """Record lost seqs first..last (all of them lost: a gap has no holes)."""
        first, last, reason = gap.first_seq, gap.last_seq, gap.reason
        from_ms, to_ms, samples = gap.from_ms, gap.to_ms, gap.samples
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
                (last, from_ms, to_ms, gap.batches, samples, previous[0]),
            )
        else:
            self._db.execute(
                "INSERT INTO gaps (first_seq, last_seq, from_ms, to_ms, batches, samples, reason) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (first, last, from_ms, to_ms, gap.batches, samples, reason),
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
        self._db.execute("DELETE FROM sent_forms WHERE seq = ?", (seq,))
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
                error = SpoolDiskFull if _is_sqlite_full(exc) else SpoolError
                raise error(f"spool {self.path}: write failed: {exc}") from exc
            raise
        self._settle_debt()

    # ---- a full disk (see the module docstring)

    def _drain_write(self, write: Callable[[], _T]) -> _T:
        """A write that frees room: on a full disk retry after a checkpoint, then on the reserve."""
        try:
            return write()
        except SpoolDiskFull as exc:
            refused = exc
        if self._checkpoint():
            try:
                return write()
            except SpoolDiskFull as exc:
                refused = exc
        if not self._spend_reserve("a write that frees room was refused"):
            raise refused
        self._checkpoint()
        return write()

    def _spend_reserve(self, why: str) -> bool:
        """Delete the reserve if the disk is really full; True if that freed room."""
        # With as much free as the reserve would give, the refusal is not the
        # disk's (max_page_count, the test seam): keep the reserve.
        if _free_bytes(self.path.parent) >= self._reserve.size:
            return False
        return self._reserve.release(why)

    def _debt_pages(self) -> int:
        """Pages the WAL holds beyond the end of the database file (the checkpoint must add)."""
        (pages,) = self._db.execute("PRAGMA page_count").fetchone()
        try:
            on_disk = self.path.stat().st_size // self._page_size
        except OSError:
            on_disk = 0
        return max(0, int(pages) - on_disk)

    def _settle_debt(self) -> None:
        """After a commit: checkpoint now if the file must grow, while room is likely."""
        try:
            owed = self._checkpoint_owed or self._debt_pages() > 0
        except sqlite3.Error as exc:
            logger.warning("spool %s: cannot read its size: %s", self.path, exc)
            return
        if owed:
            self._checkpoint()

    def _checkpoint(self) -> bool:
        """A full checkpoint (one connection, no readers); False if the disk refused it."""
        try:
            busy, wal_frames, backfilled = self._db.execute(
                "PRAGMA wal_checkpoint(PASSIVE)"
            ).fetchone()
        except sqlite3.Error as exc:
            if not self._checkpoint_owed:
                logger.warning("spool %s: checkpoint refused, appends wait: %s", self.path, exc)
            self._checkpoint_owed = True
            return False
        done = not busy and backfilled >= wal_frames
        if done and self._checkpoint_owed:
            logger.warning("spool %s: owed checkpoint done, appends resume", self.path)
        self._checkpoint_owed = not done
        return done

    def _check_room_for_the_debt(self) -> None:
        """In an append, before COMMIT: without a reserve, refuse a debt the disk may not take."""
        if self._reserve.held:
            return
        debt = self._debt_pages() * self._page_size
        if debt == 0:
            return
        # Twice: the pages go to the WAL first, then to the file at the checkpoint.
        free = _free_bytes(self.path.parent)
        if 2 * debt + _NO_RESERVE_MARGIN_BYTES > free:
            raise SpoolDiskFull(
                f"spool {self.path}: disk full: {free} bytes free, no reserve, "
                f"and the batch would need {debt} bytes twice"
            )

    def _init_schema(self, agent_id: str | None) -> str:
        if agent_id is not None:
            validate_agent_id(agent_id)
        with self._transaction(durable=True):
            self._create_tables()
            self._db.execute("INSERT OR IGNORE INTO meta VALUES ('next_seq', '1')")
            if agent_id is None and self._stored_agent_id() is None:
                agent_id = _new_agent_id()
            # Only when it changes: opening writes nothing, so a full disk cannot refuse it.
            if agent_id is not None and agent_id != self._stored_agent_id():
                self._db.execute("INSERT OR REPLACE INTO meta VALUES ('agent_id', ?)", (agent_id,))
            stored = self._stored_agent_id()
        assert stored is not None  # written above in this transaction
        return stored

    def _stored_agent_id(self) -> str | None:
        return self._meta("agent_id")

    def _meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
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
        # Exclusive before the first WAL access: the WAL index is then kept in
        # memory, with no -shm file to create (which fails on a full disk).
        db.execute("PRAGMA locking_mode = EXCLUSIVE")
        mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
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
        error = SpoolDiskFull if _is_sqlite_full(exc) else SpoolError
        raise error(f"cannot open spool {path}: {exc}") from exc
    except sqlite3.DatabaseError as exc:
        db.close()
        raise SpoolError(f"spool {path} is not a usable SQLite database: {exc}") from exc
    if mode != "wal":
        logger.warning("spool %s: journal mode is %s, not WAL", path, mode)
    return db


class _Reserve:
    """The file of ``size`` bytes that a drain on a full disk deletes to make room."""

    def __init__(self, path: Path, size: int) -> None:
        self.path = path
        self.size = size
        self.held = size > 0 and _size_of(path) >= size

    def ensure(self) -> None:
        """Create the reserve if the disk has room for it and as much again; never raises."""
        if self.held or self.size <= 0 or _free_bytes(self.path.parent) < 2 * self.size:
            return
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600)
            try:
                _allocate(fd, self.size)
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            logger.info("cannot create the spool reserve %s: %s", self.path, exc)
            with suppress(OSError):
                self.path.unlink(missing_ok=True)  # a part of it would only take room
            return
        self.held = True
        logger.info("spool reserve %s: %s bytes held for a full disk", self.path, self.size)

    def release(self, why: str) -> bool:
        """Delete the reserve; True if it was there."""
        if _size_of(self.path) == 0:
            self.held = False
            return False
        try:
            self.path.unlink()
        except OSError as exc:
            logger.error("cannot delete the spool reserve %s: %s", self.path, exc)
            return False
        self.held = False
        logger.warning("disk full (%s): spool reserve %s deleted to drain", why, self.path)
        return True


def _size_of(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _allocate(fd: int, size: int) -> None:
    """Allocated blocks, not a sparse file: the room must really be taken."""
    if hasattr(os, "posix_fallocate"):
        os.posix_fallocate(fd, 0, size)
        return
    chunk = bytes(64 * 1024)  # Windows, macOS: write the zeros
    for _ in range(0, size, len(chunk)):
        os.write(fd, chunk)


def _free_bytes(directory: Path) -> int:
    """Bytes an unprivileged writer may still take on the disk (0 if unknown)."""
    try:
        if hasattr(os, "statvfs"):
            st = os.statvfs(directory)
            return st.f_bavail * st.f_frsize
        # Windows. Imported here: shutil would add its compression imports to every agent.
        import shutil

        return shutil.disk_usage(directory).free
    except OSError:
        return 0


def _is_sqlite_full(exc: sqlite3.Error) -> bool:
    return (getattr(exc, "sqlite_errorcode", 0) & 0xFF) == sqlite3.SQLITE_FULL


def _may_be_disk_full(exc: SpoolError) -> bool:
    """Full, or an I/O error (how a failed -shm or file creation shows) on a full disk."""
    if isinstance(exc, SpoolDiskFull):
        return True
    cause = exc.__cause__
    if not isinstance(cause, sqlite3.Error):
        return False
    code = getattr(cause, "sqlite_errorcode", 0) & 0xFF
    return code in (sqlite3.SQLITE_IOERR, sqlite3.SQLITE_CANTOPEN)


def _gap_of(run: Sequence[_Row], reason: str) -> Gap:
    """The gap of a run of consecutive lost rows."""
    return Gap(
        first_seq=run[0].seq,
        last_seq=run[-1].seq,
        from_ms=min(r.from_ms for r in run),
        to_ms=max(r.to_ms for r in run),
        batches=len(run),
        samples=sum(r.samples for r in run),
        reason=reason,
    )


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


def _form(columnar: bool) -> str:
    return "columns" if columnar else "rows"


def _new_agent_id() -> str:
    """A random (version 4) UUID in its usual text form.

    Made here from os.urandom rather than by uuid.uuid4(): the uuid module
    loads platform and _uuid (0.15 MiB) into the agent for this one call.
    """
    raw = bytearray(os.urandom(16))
    raw[6] = (raw[6] & 0x0F) | 0x40  # version 4
    raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122 variant
    text = raw.hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"
