"""The disk under the agent's spool is full while the collector is away (issue 7).

A real agent (runner, spool, shipper) samples 100 samples every 50 ms with a
spool bound of 8 MiB, far more than the disk holds: the disk, not the bound,
is what refuses. Two disks:

- A (always runs): SQLite's ``PRAGMA max_page_count`` caps the spool file at
  64 pages of 4 KiB, so writes fail with SQLITE_FULL, the very error of a full
  disk; room comes back when the collector returns and the acked batches free
  their pages.
- B (root only): a 16 MiB tmpfs that another file, written once the agent
  runs (and holds its reserve), fills down to 256 KiB. Then either that file
  is deleted (room again) and the collector returns, or the disk stays full
  (issue 7): the collector returns and the spool must drain anyway, on the
  reserve it deletes, also after an agent restarted on that full disk.

What the user cares about: the agent loop stays alive and keeps sampling; the
spool stays within its disk; afterwards every batch that was spooled is stored
exactly once; the refused samples are counted as 'disk_full', recorded as a
gap that reaches the collector (ingest_gaps), and per agent generated = stored
+ spooled + dropped, with the seqs dense over stored + spooled + gaps.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from e2e_procs import free_port
from swarm import SyntheticSource

from agent.backoff import BackoffPolicy
from agent.connection import Endpoint
from agent.errors import SpoolError
from agent.runner import Agent
from agent.settings import AgentConfig
from agent.shipper import Shipper
from agent.spool import DISK_FULL, RESERVE_BYTES, SqliteSpool
from collector.abc import MetricStore
from collector.admin import add_dealer
from collector.server import CollectorServer
from collector.settings import CollectorSettings
from collector.store import open_store

AGENT_ID = "disk-full-1"
INTERVAL_S = 0.05
SAMPLES_PER_INTERVAL = 100
# Far above what either disk holds: a 'spool_full' drop would mean the test
# measured the byte bound, not the disk.
SPOOL_MAX_BYTES = 8 * 1024 * 1024
PAGE_CAP = 64  # variant A: 64 pages of 4 KiB
TMPFS_BYTES = 16 * 1024 * 1024  # variant B: room for the 4 MiB reserve twice, and more
TMPFS_ROOM_BYTES = 256 * 1024  # what the other file leaves to the spool (beyond its reserve)
# Appends refused after the disk is first seen full, before the collector returns.
REFUSALS_WANTED = 40
WAIT_S = 90.0
REFUSED_MESSAGE = "could not spool"
# agent.spool's warning at close for refused appends it could not record.
LOST_AT_CLOSE_MESSAGE = "lost uncounted at close"


@contextmanager
def collector_at(store: MetricStore, port: int) -> Iterator[None]:
    """A real collector on 127.0.0.1:port (where the agent already looks), own loop and thread."""
    server = CollectorServer(
        store, f"127.0.0.1:{port}", CollectorSettings(alerting=False, run_jobs=False)
    )
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="disk-full-collector", daemon=True)
    thread.start()
    try:
        asyncio.run_coroutine_threadsafe(server.start(), loop).result(30)
        yield
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(5.0), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
        loop.close()


async def until(
    condition: Callable[[], bool], what: str, state: Callable[[], str], timeout_s: float = WAIT_S
) -> None:
    """Poll condition on the running loop (the agent keeps running meanwhile)."""
    try:
        async with asyncio.timeout(timeout_s):
            while not condition():
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(
            f"timed out after {timeout_s:.0f} s waiting for {what}; {state()}"
        ) from None


@dataclass
class WhileFull:
    """What the test saw while the disk was full."""

    spooled_seqs: set[int]
    spool_bytes: int


@dataclass
class Scenario:
    tmp_path: Path
    spool_path: Path
    caplog: pytest.LogCaptureFixture
    max_page_count: int | None = None
    # Appends refused before the agent was restarted (restart=True only).
    refused_before_restart: int = 0

    def __post_init__(self) -> None:
        self.store = open_store(f"sqlite:///{self.tmp_path / 'collector.db'}", pool_size=5)
        dealer, self.token = add_dealer(self.store, "Full Disk Motors")
        self.dealer_id = dealer.dealer_id
        self.port = free_port()  # nobody listens here until the collector comes back

    def open_spool(self) -> SqliteSpool:
        spool = SqliteSpool(
            self.spool_path, SPOOL_MAX_BYTES, dealer_id=self.dealer_id, agent_id=AGENT_ID
        )
        if self.max_page_count is not None:
            spool.limit_pages(self.max_page_count)
        return spool

    def refusals(self) -> int:
        return len(self._refused_records())

    def _refused_records(self) -> list[logging.LogRecord]:
        return [r for r in self.caplog.records if REFUSED_MESSAGE in r.getMessage()]

    def lost_at_close(self) -> int:
        """Refused appends a stopping agent could not record (its disk still full)."""
        return sum(batches for _, batches in self._lost_at_close())

    def _lost_at_close(self) -> list[tuple[int, int]]:
        """(samples, batches) of each refused run a stopping agent could not record."""
        lost = []
        for record in self.caplog.records:
            if record.name == "agent.spool" and LOST_AT_CLOSE_MESSAGE in str(record.msg):
                # args: path, samples, batches, error
                assert isinstance(record.args, tuple)
                samples, batches = record.args[1], record.args[2]
                assert isinstance(samples, int) and isinstance(batches, int)
                lost.append((samples, batches))
        return lost

    def recorded_refusals(self) -> int:
        return self.refusals() - self.lost_at_close()

    def refused_samples(self) -> int:
        """Samples of the recorded refusals, as the runner logged them.

        Not refusals x SAMPLES_PER_INTERVAL: on a loaded machine a collection
        can overrun its 40 ms and the interval's batch is empty (0 samples),
        and an empty batch refused is still a lost seq.
        """
        logged = 0
        for record in self._refused_records():
            # agent.runner: "could not spool %s samples: %s" (count, error)
            assert isinstance(record.args, tuple)
            count = record.args[0]
            assert isinstance(count, int)
            logged += count
        return logged - sum(samples for samples, _ in self._lost_at_close())

    def collector_gaps(self) -> list[tuple[int, int, int, int, str]]:
        return [
            (g.first_seq, g.last_seq, g.batches, g.samples, g.reason)
            for g in self.store.list_gaps(self.dealer_id)
            if g.agent_id == AGENT_ID
        ]

    def state(self, spool: SqliteSpool) -> str:
        committed = self.store.committed_batches(AGENT_ID)
        return (
            f"spool {spool.stats()}, {self.refusals()} appends refused, "
            f"{len(committed)} batches committed (seq {min(committed, default=0)}.."
            f"{max(committed, default=0)}), gaps {self.collector_gaps()}"
        )

    def start_agent(self) -> tuple[Agent, SqliteSpool, asyncio.Task[None]]:
        spool = self.open_spool()
        config = AgentConfig(
            collector=f"127.0.0.1:{self.port}",
            token=self.token,
            interval_s=INTERVAL_S,
            spool_path=self.spool_path,
            spool_max_bytes=SPOOL_MAX_BYTES,
            agent_id=AGENT_ID,
            hostname=AGENT_ID,
        )
        shipper = Shipper(
            Endpoint(config.collector, self.token),
            spool,
            hostname=AGENT_ID,
            backoff=BackoffPolicy(initial_s=0.05, max_s=0.5),
        )
        source = SyntheticSource(SAMPLES_PER_INTERVAL, seed=7)
        agent = Agent(config, [source], spool, shipper)
        return agent, spool, asyncio.create_task(agent.run())

    async def run(
        self,
        make_room: Callable[[], None],
        fill_disk: Callable[[], None] = lambda: None,
        *,
        restart: bool = False,
    ) -> WhileFull:
        """Fill the disk with the collector away; make room (or restart), bring it back; drain."""
        self.caplog.set_level(logging.ERROR, logger="agent.runner")
        self.caplog.set_level(logging.WARNING, logger="agent.spool")
        agent, spool, running = self.start_agent()
        fill_disk()
        try:
            await until(lambda: self.refusals() >= 1, "the disk to fill", lambda: self.state(spool))
            # The loop samples on: REFUSALS_WANTED more intervals, each one refused.
            refusals_when_full = self.refusals()
            await until(
                lambda: self.refusals() >= refusals_when_full + REFUSALS_WANTED,
                "more refused appends",
                lambda: self.state(spool),
            )
            assert not running.done(), "the agent loop ended on a full disk"
            full = WhileFull(
                spooled_seqs={b.seq for b in spool.pending(limit=100_000)},
                spool_bytes=spool.stats().bytes,
            )
            # The disk, not the byte bound, refuses.
            assert set(spool.stats().dropped) <= {DISK_FULL}
            if restart:
                # Stopped and started again on the disk that stays full.
                agent.stop()
                async with asyncio.timeout(30):
                    await running
                self.refused_before_restart = self.refusals()
                agent, spool, running = self.start_agent()
                refusals_at_start = self.refusals()
                await until(
                    lambda: self.refusals() > refusals_at_start,
                    "the restarted agent to sample (and be refused)",
                    lambda: self.state(spool),
                )
            make_room()
            with collector_at(self.store, self.port):
                await until(
                    lambda: (
                        spool.stats().dropped.get(DISK_FULL, 0) == self.refused_samples()
                        and full.spooled_seqs <= set(self.store.committed_batches(AGENT_ID))
                        and any(g[4] == DISK_FULL for g in self.collector_gaps())
                    ),
                    "the spooled batches and the disk_full gap at the collector",
                    lambda: self.state(spool),
                )
                assert not running.done()
                agent.stop()
                async with asyncio.timeout(30):
                    await running
        finally:
            if not running.done():
                agent.stop()
                running.cancel()
                await asyncio.gather(running, return_exceptions=True)
        return full

    def audit(self, full: WhileFull) -> None:
        """Exactly once, the gap at the collector, conservation, dense seqs."""
        with self.open_spool() as spool:
            stats = spool.stats()
            pending = {b.seq: b.samples for b in spool.pending(limit=100_000)}
        committed = self.store.committed_batches(AGENT_ID)
        stored = self.store.count_samples(AGENT_ID)
        gaps = self.collector_gaps()
        self.store.close()

        refusals = self.recorded_refusals()
        refused_samples = self.refused_samples()
        # Sampling went on after the disk was full: newer batches than every gap are stored.
        assert max(committed) > max(g[1] for g in gaps)
        # Every batch that was spooled when the disk was full is stored, exactly once.
        assert full.spooled_seqs <= set(committed)
        assert stored == sum(committed.values())
        # The loss: every refused append, counted and reported in disk_full gaps.
        assert stats.dropped == {DISK_FULL: refused_samples}
        assert {g[4] for g in gaps} == {DISK_FULL}
        assert sum(g[2] for g in gaps) == refusals
        assert sum(g[3] for g in gaps) == refused_samples
        gap_seqs = {seq for g in gaps for seq in range(g[0], g[1] + 1)}
        assert not gap_seqs & set(committed)
        everything = set(committed) | set(pending) | gap_seqs
        assert everything == set(range(1, max(everything) + 1))
        # A batch committed whose ack was still on the way at the stop is in both.
        in_both = sum(committed[seq] for seq in set(pending) & set(committed))
        assert stats.generated + in_both == stored + stats.samples + stats.dropped_total


def fill_the_other_file(disk: Path) -> Path:
    """Another program's file takes all but TMPFS_ROOM_BYTES of what is free on the disk."""
    other = disk / "other-program.log"
    free = shutil.disk_usage(disk).free
    other.write_bytes(b"\0" * (free - TMPFS_ROOM_BYTES))
    return other


def reserve_of(spool_path: Path) -> Path:
    return spool_path.with_name(spool_path.name + "-reserve")


def test_disk_full_by_page_cap_is_counted_as_a_gap_and_drained(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    scenario = Scenario(tmp_path, tmp_path / "spool.db", caplog, max_page_count=PAGE_CAP)
    full = asyncio.run(scenario.run(make_room=lambda: None))
    # Bounded: never more batches than the 64 pages hold.
    assert 0 < full.spool_bytes <= PAGE_CAP * 4096
    scenario.audit(full)


def test_a_real_full_tmpfs_is_counted_as_a_gap_and_drained_once_there_is_room(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, small_tmpfs: Callable[[int], Path]
) -> None:
    disk = small_tmpfs(TMPFS_BYTES)
    other = disk / "other-program.log"
    scenario = Scenario(tmp_path, disk / "spool.db", caplog)

    before_full: list[int] = []

    def fill_disk() -> None:
        before_full.append(spool_files_on(disk, other))
        fill_the_other_file(disk)

    def make_room() -> None:
        # Bounded: the spool's files fit in the room the other file left them.
        assert spool_files_on(disk, other) <= before_full[0] + TMPFS_ROOM_BYTES
        other.unlink()

    full = asyncio.run(scenario.run(make_room, fill_disk))
    assert 0 < full.spool_bytes <= TMPFS_ROOM_BYTES
    scenario.audit(full)


def spool_files_on(disk: Path, other: Path) -> int:
    """Bytes the spool's files take on the disk (allocated blocks), its reserve aside."""
    return sum(
        p.stat().st_blocks * 512
        for p in disk.iterdir()
        if p != other and p != reserve_of(disk / "spool.db")
    )


@pytest.mark.parametrize("restart", [False, True], ids=["running", "restarted"])
def test_the_collector_back_drains_the_spool_while_the_disk_stays_full(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    small_tmpfs: Callable[[int], Path],
    restart: bool,
) -> None:
    """Issue 7: nothing else frees room; the reserve the agent deletes is what lets it drain."""
    disk = small_tmpfs(TMPFS_BYTES)
    other = disk / "other-program.log"
    spool_path = disk / "spool.db"
    scenario = Scenario(tmp_path, spool_path, caplog)

    before_full: list[int] = []

    def fill_disk() -> None:
        assert reserve_of(spool_path).stat().st_size == RESERVE_BYTES  # held at open
        before_full.append(spool_files_on(disk, other))
        fill_the_other_file(disk)

    def keep_the_disk_full() -> None:
        assert spool_files_on(disk, other) <= before_full[0] + TMPFS_ROOM_BYTES
        assert shutil.disk_usage(disk).free < TMPFS_ROOM_BYTES

    full = asyncio.run(scenario.run(keep_the_disk_full, fill_disk, restart=restart))
    # Drained with the other file still there: the reserve paid for it, and is
    # not taken back from a disk that has no room for it.
    assert other.exists() and not reserve_of(spool_path).exists()
    assert 0 < full.spool_bytes <= TMPFS_ROOM_BYTES
    if restart:
        # The first run could not record its refused appends at its stop (the
        # disk full, its reserve kept for the drain): their count is in its log.
        # The restarted agent's refusals are all recorded (audit).
        assert scenario.lost_at_close() == scenario.refused_before_restart
    else:
        assert scenario.lost_at_close() == 0
    scenario.audit(full)


@pytest.mark.parametrize("restart", [False, True], ids=["running", "restarted"])
def test_acks_free_room_while_the_disk_stays_full(
    small_tmpfs: Callable[[int], Path], restart: bool
) -> None:
    """The spool alone: filled by appends, drained by acks, sampling again; the disk stays full."""
    disk = small_tmpfs(TMPFS_BYTES)
    path = disk / "spool.db"
    source = SyntheticSource(SAMPLES_PER_INTERVAL, seed=3)
    start_ms = 1_700_000_000_000

    def open_spool() -> SqliteSpool:
        return SqliteSpool(path, SPOOL_MAX_BYTES, dealer_id="full-disk", agent_id=AGENT_ID)

    spool = open_spool()
    try:
        assert reserve_of(path).stat().st_size == RESERVE_BYTES
        fill_the_other_file(disk)
        seqs: list[int] = []
        refused = 0
        for interval in range(1_000):
            try:
                seqs.append(spool.append(source.collect(start_ms + interval * 1000)))
            except SpoolError:
                refused += 1
                if refused == REFUSALS_WANTED:
                    break
        else:
            pytest.fail("1,000 batches fitted: the disk never filled")
        assert seqs
        if restart:
            spool.close()  # its refused appends are lost uncounted: the disk is full
            spool = open_spool()
            assert spool.stats().batches == len(seqs)
        # The collector is back and acks everything: the spool forgets it...
        for seq in seqs:
            spool.note_sent(seq, 1)
            assert spool.ack(seq)
        # ...and takes new batches again, in the pages the acked ones freed.
        for interval in range(1_000, 1_000 + len(seqs)):
            spool.append(source.collect(start_ms + interval * 1000))
        stats = spool.stats()
        assert stats.batches == len(seqs)
        recorded = {DISK_FULL: refused * SAMPLES_PER_INTERVAL}
        # A restart may lose the count of the refused appends (held in memory,
        # recorded at close only if the full disk takes it), never more.
        assert stats.dropped in ([{}, recorded] if restart else [recorded])
        assert not reserve_of(path).exists()
        assert shutil.disk_usage(disk).free < RESERVE_BYTES
    finally:
        spool.close()


def test_a_spool_opens_on_a_disk_with_no_room_at_all_on_its_reserve(
    small_tmpfs: Callable[[int], Path], caplog: pytest.LogCaptureFixture
) -> None:
    """A new spool file needs room to be created: the reserve left there gives it."""
    disk = small_tmpfs(TMPFS_BYTES)
    path = disk / "spool.db"
    SqliteSpool(path, SPOOL_MAX_BYTES, dealer_id="full-disk", agent_id=AGENT_ID).close()
    assert reserve_of(path).exists()
    for leftover in disk.glob("spool.db*"):
        if leftover != reserve_of(path):
            leftover.unlink()  # the spool is lost (deleted by hand, say), the reserve stays
    other = disk / "other-program.log"
    other.write_bytes(b"\0" * shutil.disk_usage(disk).free)
    assert shutil.disk_usage(disk).free == 0
    caplog.set_level(logging.WARNING, logger="agent.spool")
    with SqliteSpool(path, SPOOL_MAX_BYTES, dealer_id="full-disk", agent_id=AGENT_ID) as spool:
        assert spool.agent_id == AGENT_ID
        assert not reserve_of(path).exists()
        assert any("deleted to drain" in r.getMessage() for r in caplog.records)
