"""agent.spool: seqs never reused, drops counted and reported, conservation holds."""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
from pathlib import Path

import pytest
from agent_testkit import DEALER, samples
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from agent.errors import SpoolBusy, SpoolError
from agent.spool import (
    DISK_FULL,
    RESERVE_BYTES,
    SENT_AS_STORED,
    SpoolDiskFull,
    SpoolStats,
    SqliteSpool,
)
from dealerpulse.clock import FakeClock
from dealerpulse.v1 import ingest_pb2 as pb


def open_spool(path: Path, max_bytes: int = 1 << 20, agent_id: str | None = None) -> SqliteSpool:
    return SqliteSpool(
        path, max_bytes, FakeClock(), dealer_id=DEALER, hostname="h1", agent_id=agent_id
    )


def batch_of(spool: SqliteSpool, seq: int) -> pb.Batch:
    stored = spool.load(seq)
    assert stored is not None, f"seq {seq} not in the spool"
    return pb.Batch.FromString(stored.payload)


def conserved(stats: SpoolStats) -> bool:
    return stats.generated == stats.stored + stats.samples + stats.dropped_total


def test_append_stores_the_encoded_batch_with_identity_and_counters(tmp_path: Path) -> None:
    with open_spool(tmp_path / "s.db") as spool:
        assert spool.append(samples(3)) == 1
        assert spool.append(samples(2)) == 2
        batch = batch_of(spool, 2)
        assert (batch.seq, batch.dealer_id, batch.hostname) == (2, DEALER, "h1")
        assert batch.agent_id == spool.agent_id and batch.boot_id == spool.boot_id
        assert len(batch.samples) == 2
        assert batch.counters.generated_samples == 5
        assert batch.counters.spool_batches == 1  # what was waiting when it was built
        stats = spool.stats()
        assert (stats.batches, stats.samples, stats.generated) == (2, 5, 5)


def test_pending_is_oldest_first_and_resumes_after_a_seq(tmp_path: Path) -> None:
    with open_spool(tmp_path / "s.db") as spool:
        for _ in range(5):
            spool.append(samples(1))
        spool.ack(2)
        assert [b.seq for b in spool.pending()] == [1, 3, 4, 5]
        assert [b.seq for b in spool.pending(after_seq=3, limit=1)] == [4]
        assert spool.pending(after_seq=5) == []
        upcoming = spool.next_after(1)
        assert upcoming is not None and upcoming.seq == 3
        assert upcoming.size == len(spool.pending(after_seq=1, limit=1)[0].payload)
        assert spool.next_after(5) is None


def test_ack_forgets_the_batch_and_counts_it_stored(tmp_path: Path) -> None:
    with open_spool(tmp_path / "s.db") as spool:
        spool.append(samples(3))
        assert spool.ack(1) is True
        assert spool.ack(1) is False  # a second ack (duplicate delivery) is harmless
        stats = spool.stats()
        assert (stats.batches, stats.bytes, stats.stored, stats.generated) == (0, 0, 3, 3)


def test_seqs_agent_id_and_counters_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    with open_spool(path) as spool:
        for _ in range(3):
            spool.append(samples(2))
        spool.ack(1)
        spool.reject(2)
        agent_id, before, payload = spool.agent_id, spool.stats(), spool.load(3)
    with open_spool(path) as spool:
        assert spool.agent_id == agent_id
        assert spool.stats() == before
        assert spool.load(3) == payload  # a resend after restart is byte-identical
        assert spool.append(samples(1)) == 4


def test_agent_id_override_is_kept_and_validated(tmp_path: Path) -> None:
    with open_spool(tmp_path / "s.db", agent_id="dealer-host-7") as spool:
        assert spool.agent_id == "dealer-host-7"
    with open_spool(tmp_path / "s.db") as spool:
        assert spool.agent_id == "dealer-host-7"
    with pytest.raises(ValueError, match="agent id"):
        open_spool(tmp_path / "other.db", agent_id="bad id with spaces")


def test_rejected_batch_is_counted_and_its_gap_rides_in_the_next_batch(tmp_path: Path) -> None:
    clock = FakeClock()
    with SqliteSpool(tmp_path / "s.db", clock=clock, dealer_id=DEALER) as spool:
        spool.append(samples(4, time_ms=1000))
        assert spool.reject(1) is True
        assert spool.stats().dropped == {"rejected": 4}
        carrier = batch_of(spool, spool.append(samples(1)))
        [gap] = carrier.gaps
        assert (gap.first_seq, gap.last_seq, gap.batches, gap.samples, gap.reason) == (
            1,
            1,
            1,
            4,
            "rejected",
        )
        assert (gap.from_unix_ms, gap.to_unix_ms) == (1000, 1000)
        assert carrier.counters.dropped_samples == {"rejected": 4}
        # Once carried and acked, a gap is not reported again.
        spool.ack(2)
        assert list(batch_of(spool, spool.append([])).gaps) == []


def test_a_dropped_carrier_gives_its_gaps_back(tmp_path: Path) -> None:
    with open_spool(tmp_path / "s.db") as spool:
        spool.append(samples(2))
        spool.reject(1)
        spool.append(samples(1))  # seq 2 carries the gap of seq 1
        spool.reject(2)
        carrier = batch_of(spool, spool.append([]))
        assert [(g.first_seq, g.last_seq, g.batches, g.samples) for g in carrier.gaps] == [
            (1, 2, 2, 3)
        ]


def test_full_spool_drops_oldest_counts_them_and_records_one_gap(tmp_path: Path) -> None:
    with open_spool(tmp_path / "s.db", max_bytes=20_000) as spool:
        seqs = [spool.append(samples(20)) for _ in range(40)]
        stats = spool.stats()
        assert stats.bytes <= 20_000
        assert stats.dropped["spool_full"] > 0
        assert conserved(stats)
        pending = [b.seq for b in spool.pending(limit=1000)]
        assert pending == seqs[-len(pending) :]  # the newest survive
        newest = batch_of(spool, pending[-1])
        full = [g for g in newest.gaps if g.reason == "spool_full"]
        assert len(full) <= 1
        # Every dropped batch is accounted for by a gap carried by a batch
        # still in the spool.
        carried = [
            g for b in spool.pending(limit=1000) for g in pb.Batch.FromString(b.payload).gaps
        ]
        assert sum(g.batches for g in carried) == seqs[0] + len(seqs) - 1 - len(pending)
        assert sum(g.samples for g in carried) == stats.dropped["spool_full"]


def test_batch_larger_than_the_spool_is_dropped_alone(tmp_path: Path) -> None:
    with open_spool(tmp_path / "s.db", max_bytes=4_000) as spool:
        spool.append(samples(2))
        big = spool.append(samples(500))
        assert spool.load(big) is None
        assert [b.seq for b in spool.pending()] == [1]
        stats = spool.stats()
        assert stats.dropped == {"too_large": 500} and conserved(stats)
        assert spool.append([]) == big + 1  # the seq was used, never again


def test_second_agent_on_the_same_spool_is_refused(tmp_path: Path) -> None:
    with open_spool(tmp_path / "s.db"), pytest.raises(SpoolBusy, match="in use"):
        open_spool(tmp_path / "s.db")


def test_corrupt_spool_is_named(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(SpoolError, match=str(path)):
        open_spool(path)


def test_spool_is_sqlite_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    open_spool(path).close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


class SpoolMachine(RuleBasedStateMachine):
    """Random appends, acks, rejects and restarts against a model of what happened."""

    MAX_BYTES = 12_000

    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="spool-machine-"))
        self.spool = open_spool(self.dir / "s.db", self.MAX_BYTES)
        self.seqs: list[int] = []
        self.acked: set[int] = set()
        self.delivered_gaps: list[pb.Gap] = []

    def teardown(self) -> None:
        self.spool.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    @rule(count=st.integers(0, 60))
    def append(self, count: int) -> None:
        seq = self.spool.append(samples(count))
        assert not self.seqs or seq > self.seqs[-1], "a seq was reused"
        self.seqs.append(seq)
        # A successful append carries every pending gap: by now each batch
        # that is gone without an ack must be covered by a gap delivered
        # (in an acked batch) or carried (in a spooled one).
        gone = set(self.seqs) - self._in_spool() - self.acked
        assert gone <= self._covered(), "a dropped or rejected batch was never reported"

    @precondition(lambda self: self.spool.stats().batches > 0)
    @rule(data=st.data(), reject=st.booleans())
    def settle(self, data: st.DataObject, reject: bool) -> None:
        batch = data.draw(st.sampled_from(self.spool.pending(limit=1000)))
        if reject:
            assert self.spool.reject(batch.seq)
        else:
            self.delivered_gaps += pb.Batch.FromString(batch.payload).gaps
            assert self.spool.ack(batch.seq)
            self.acked.add(batch.seq)

    @rule()
    def restart(self) -> None:
        before = self.spool.stats()
        self.spool.close()
        self.spool = open_spool(self.dir / "s.db", self.MAX_BYTES)
        assert self.spool.stats() == before

    @invariant()
    def conservation_holds_within_the_bound(self) -> None:
        stats = self.spool.stats()
        assert conserved(stats), stats
        assert stats.bytes <= self.MAX_BYTES

    @invariant()
    def no_gap_claims_a_batch_that_is_still_spooled(self) -> None:
        assert not self._covered() & self._in_spool()

    @invariant()
    def no_gap_is_delivered_twice_and_none_has_holes(self) -> None:
        seen: set[int] = set()
        for gap in self.delivered_gaps:
            assert gap.batches == gap.last_seq - gap.first_seq + 1, gap
            seqs = set(range(gap.first_seq, gap.last_seq + 1))
            assert not seqs & seen, f"gap {gap} reported again"
            seen |= seqs

    def _in_spool(self) -> set[int]:
        return {b.seq for b in self.spool.pending(limit=10_000)}

    def _covered(self) -> set[int]:
        gaps = list(self.delivered_gaps)
        for batch in self.spool.pending(limit=10_000):
            gaps += pb.Batch.FromString(batch.payload).gaps
        return {seq for gap in gaps for seq in range(gap.first_seq, gap.last_seq + 1)}


SpoolMachine.TestCase.settings = settings(max_examples=40, stateful_step_count=25, deadline=None)
test_spool_state_machine = SpoolMachine.TestCase


# ---- a full disk (issue 7; the real full disk is in tests/reliability/test_spool_disk_full.py)


def reserve_of(path: Path) -> Path:
    return path.with_name(path.name + "-reserve")


def test_a_reserve_file_is_held_next_to_the_spool_and_kept_across_restarts(
    tmp_path: Path,
) -> None:
    path = tmp_path / "s.db"
    if shutil.disk_usage(tmp_path).free < 2 * RESERVE_BYTES:
        pytest.skip("the test disk has no room for a reserve")
    open_spool(path).close()
    reserve = reserve_of(path)
    assert reserve.stat().st_size == RESERVE_BYTES
    # Allocated, not sparse: the room is really taken.
    assert reserve.stat().st_blocks * 512 >= RESERVE_BYTES
    inode = reserve.stat().st_ino
    open_spool(path).close()
    assert reserve.stat().st_ino == inode


def test_opening_writes_nothing_and_keeps_no_shared_memory_file(tmp_path: Path) -> None:
    """What lets a spool open on a full disk: no -shm file, no WAL frame, when nothing changed."""
    path = tmp_path / "s.db"
    with open_spool(path, agent_id="agent-1") as spool:
        spool.append(samples(3))
    with open_spool(path, agent_id="agent-1") as spool:
        wal = path.with_name(path.name + "-wal")
        assert not wal.exists() or wal.stat().st_size == 0
        assert not path.with_name(path.name + "-shm").exists()
        assert spool.stats().batches == 1


def test_a_write_the_page_cap_refuses_keeps_the_reserve_and_acks_make_room(
    tmp_path: Path,
) -> None:
    """max_page_count refuses like a full disk, but the disk has room: the reserve stays."""
    path = tmp_path / "s.db"
    with open_spool(path, max_bytes=1 << 24) as spool:
        held = reserve_of(path).exists()
        spool.limit_pages(24)
        seqs: list[int] = []
        with pytest.raises(SpoolDiskFull):
            for _ in range(100):
                seqs.append(spool.append(samples(60)))
        assert seqs
        for seq in seqs:
            spool.note_sent(seq, SENT_AS_STORED)
            assert spool.ack(seq)
        # The acked batches' pages are reused: appends go on, and the refused one is a gap.
        next_seq = spool.append(samples(60))
        assert next_seq == seqs[-1] + 2
        assert spool.stats().dropped == {DISK_FULL: 60}
        assert reserve_of(path).exists() == held


def test_no_reserve_file_when_asked_for_none(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    SqliteSpool(path, 1 << 20, FakeClock(), dealer_id=DEALER, reserve_bytes=0).close()
    assert not reserve_of(path).exists()
