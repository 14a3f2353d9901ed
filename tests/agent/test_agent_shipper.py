"""The shipper against a real grpc.aio server on 127.0.0.1 that a test scripts."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
from agent_testkit import (
    DEALER,
    TOKEN,
    Changes,
    ScriptedCollector,
    StreamFailure,
    run,
    samples,
    serving,
)

from agent.backoff import BackoffPolicy
from agent.codec import AckStatus
from agent.connection import Endpoint
from agent.shipper import Shipper, ShipperSettings
from agent.spool import SqliteSpool
from dealerpulse.v1 import ingest_pb2 as pb

FAST = BackoffPolicy(initial_s=0.01, max_s=0.05, jitter=0.1, slow_s=0.05)


@dataclass
class Rig:
    changes: Changes
    collector: ScriptedCollector
    spool: SqliteSpool
    shipper: Shipper
    acks: list[tuple[int, AckStatus, int]] = field(default_factory=list)
    backoffs: list[tuple[float, str]] = field(default_factory=list)
    task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self.shipper.run())

    def append(self, count: int = 3) -> int:
        seq = self.spool.append(samples(count))
        self.shipper.notify()
        return seq

    async def wait_until_spool_empty(self, timeout_s: float = 5.0) -> None:
        await self.changes.wait_until(
            lambda: self.spool.stats().batches == 0, "the spool to drain", timeout_s
        )


@asynccontextmanager
async def rig(
    tmp_path: Path,
    backoff: BackoffPolicy = FAST,
    settings: ShipperSettings | None = None,
    token: str = TOKEN,
    start: bool = True,
) -> AsyncIterator[Rig]:
    changes = Changes()
    collector = ScriptedCollector(changes)
    async with serving(collector) as address:
        spool = SqliteSpool(tmp_path / "spool.db", dealer_id=DEALER, hostname="host-1")
        acks: list[tuple[int, AckStatus, int]] = []
        backoffs: list[tuple[float, str]] = []

        def on_ack(seq: int, status: AckStatus, stored: int) -> None:
            acks.append((seq, status, stored))
            changes.pulse()

        def on_backoff(delay: float, reason: str) -> None:
            backoffs.append((delay, reason))
            changes.pulse()

        shipper = Shipper(
            Endpoint(address, token),
            spool,
            hostname="host-1",
            settings=settings,
            backoff=backoff,
            rng=random.Random(7),
            on_ack=on_ack,
            on_backoff=on_backoff,
        )
        the_rig = Rig(changes, collector, spool, shipper, acks, backoffs)
        if start:
            the_rig.start()
        try:
            yield the_rig
        finally:
            await shipper.stop(flush_timeout_s=0)
            if the_rig.task is not None:
                await asyncio.wait_for(the_rig.task, 5)
            spool.close()


def test_ships_backlog_oldest_first_then_new_batches_without_polling(tmp_path: Path) -> None:
    async def body() -> None:
        async with rig(tmp_path, start=False) as r:
            for _ in range(3):
                r.append()
            r.start()
            await r.wait_until_spool_empty()
            assert r.collector.seqs() == [1, 2, 3]
            assert r.shipper.dealer_id == DEALER
            hello, metadata = r.collector.hellos[0]
            assert metadata["authorization"] == f"Bearer {TOKEN}"
            assert hello.agent_id == r.spool.agent_id and hello.hostname == "host-1"
            # A new batch goes out on the same stream as soon as it is appended.
            r.append(5)
            await r.wait_until_spool_empty()
            assert r.collector.seqs() == [1, 2, 3, 4]
            assert len(r.collector.stream_starts) == 1
            assert r.acks[-1] == (4, AckStatus.STORED, 5)
            stats = r.spool.stats()
            assert stats.stored == 14 and stats.generated == 14

    run(body())


def test_resends_unacked_batches_byte_identical_after_the_stream_breaks(tmp_path: Path) -> None:
    async def body() -> None:
        async with rig(tmp_path, start=False) as r:
            r.collector.ack_gate.clear()  # nothing is acked on the first stream
            r.collector.stream_failures.append(StreamFailure(grpc.StatusCode.UNAVAILABLE, after=2))
            for _ in range(3):
                r.append()
            r.start()
            await r.changes.wait_until(lambda: len(r.collector.stream_starts) == 2, "a reconnect")
            r.collector.ack_gate.set()
            await r.wait_until_spool_empty()
            first = [x for x in r.collector.received if x.stream == 0]
            second = [x for x in r.collector.received if x.stream == 1]
            assert [x.seq for x in first] == [1, 2]
            assert [x.seq for x in second] == [1, 2, 3]
            assert first[0].payload == second[0].payload
            assert first[1].payload == second[1].payload
            assert r.collector.stored() == {1, 2, 3}
            assert r.backoffs and "UNAVAILABLE" in r.backoffs[0][1]

    run(body())


def test_rejected_batch_is_dropped_counted_reported_and_never_resent(tmp_path: Path) -> None:
    async def body() -> None:
        async with rig(tmp_path) as r:
            r.collector.reject.add(2)
            for _ in range(3):
                r.append(4)
            await r.wait_until_spool_empty()
            # Break the stream: a reconnect must not bring seq 2 back.
            r.collector.fail_on_seq[4] = StreamFailure(grpc.StatusCode.UNAVAILABLE)
            r.append(4)  # seq 4: read, then the stream breaks before its ack
            await r.changes.wait_until(lambda: 4 in r.collector.stored(), "seq 4 stored")
            assert r.collector.seqs().count(2) == 1
            assert r.collector.seqs()[-2:] == [4, 4]
            stats = r.spool.stats()
            assert stats.dropped == {"rejected": 4}
            assert stats.generated == stats.stored + stats.samples + stats.dropped_total
            # The loss rides in the next batch built after the rejection: seq 4.
            batches = [r.collector.decoded(i) for i in range(len(r.collector.received))]
            assert {b.seq for b in batches if b.gaps} == {4}
            gaps = {(g.first_seq, g.last_seq, g.reason, g.samples) for b in batches for g in b.gaps}
            assert gaps == {(2, 2, "rejected", 4)}
            assert (2, AckStatus.REJECTED, 0) in r.acks

    run(body())


def test_retry_ack_pauses_then_resends_on_the_same_stream(tmp_path: Path) -> None:
    async def body() -> None:
        async with rig(tmp_path) as r:
            r.collector.retry_once[1] = 250
            r.append()
            await r.wait_until_spool_empty()
            ones = [x for x in r.collector.received if x.seq == 1]
            assert len(ones) == 2
            assert ones[1].at - ones[0].at >= 0.25
            assert len(r.collector.stream_starts) == 1
            assert [a[1] for a in r.acks] == [AckStatus.RETRY, AckStatus.STORED]

    run(body())


def test_reconnect_honours_the_servers_retry_after_hint(tmp_path: Path) -> None:
    async def body() -> None:
        async with rig(tmp_path, start=False) as r:
            r.collector.stream_failures.append(
                StreamFailure(grpc.StatusCode.RESOURCE_EXHAUSTED, retry_after_ms=300)
            )
            r.append()
            r.start()
            await r.wait_until_spool_empty()
            delay, reason = r.backoffs[0]
            assert delay >= 0.3 and "RESOURCE_EXHAUSTED" in reason
            starts = r.collector.stream_starts
            assert starts[1] - starts[0] >= 0.3

    run(body())


def test_without_a_hint_backoff_grows_and_resets_after_progress(tmp_path: Path) -> None:
    async def body() -> None:
        policy = BackoffPolicy(initial_s=0.01, max_s=0.08, jitter=0.0)
        async with rig(tmp_path, backoff=policy, start=False) as r:
            r.collector.stream_failures += [
                StreamFailure(grpc.StatusCode.UNAVAILABLE) for _ in range(5)
            ]
            r.append()
            r.start()
            await r.wait_until_spool_empty()
            assert [round(d, 3) for d, _ in r.backoffs] == [0.01, 0.02, 0.04, 0.08, 0.08]

    run(body())


def test_bad_token_is_logged_clearly_retried_slowly_and_stop_cuts_the_wait(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def body() -> None:
        slow = BackoffPolicy(initial_s=0.01, jitter=0.0, slow_s=30.0)
        async with rig(tmp_path, backoff=slow, start=False) as r:
            r.collector.refuse_code = grpc.StatusCode.UNAUTHENTICATED
            r.append()
            r.start()
            await r.changes.wait_until(lambda: bool(r.backoffs), "a backoff")
            assert r.backoffs[0][0] == pytest.approx(30.0)
            started = asyncio.get_running_loop().time()
            await r.shipper.stop(flush_timeout_s=5)
            assert r.task is not None
            await asyncio.wait_for(r.task, 2)
            assert asyncio.get_running_loop().time() - started < 2
            assert r.spool.stats().batches == 1  # kept for when the token is fixed

    with caplog.at_level(logging.WARNING, logger="agent.shipper"):
        run(body())
    text = caplog.text
    assert "refused the agent" in text and "UNAUTHENTICATED" in text
    assert "dp1.acme-motors.***" in text
    assert "s3cr3t" not in text


def test_in_flight_window_bounds_unacked_batches(tmp_path: Path) -> None:
    async def body() -> None:
        settings = ShipperSettings(max_in_flight_batches=2)
        async with rig(tmp_path, settings=settings) as r:
            r.collector.ack_gate.clear()
            for _ in range(6):
                r.append()
            await r.changes.wait_until(lambda: len(r.collector.received) >= 2, "two sends")
            r.collector.ack_gate.set()
            await r.wait_until_spool_empty()
            assert r.collector.seqs() == [1, 2, 3, 4, 5, 6]
            assert r.collector.max_unacked <= 2

    run(body())


def test_byte_window_admits_one_batch_at_a_time_when_they_are_large(tmp_path: Path) -> None:
    async def body() -> None:
        settings = ShipperSettings(max_in_flight_bytes=1)  # every batch is "large"
        async with rig(tmp_path, settings=settings) as r:
            r.collector.ack_gate.clear()
            for _ in range(4):
                r.append()
            await r.changes.wait_until(lambda: len(r.collector.received) >= 1, "a send")
            r.collector.ack_gate.set()
            await r.wait_until_spool_empty()
            assert r.collector.seqs() == [1, 2, 3, 4]
            assert r.collector.max_unacked == 1

    run(body())


def test_stop_waits_for_in_flight_acks_within_the_flush_time(tmp_path: Path) -> None:
    async def body() -> None:
        async with rig(tmp_path) as r:
            r.collector.ack_gate.clear()
            r.append()
            await r.changes.wait_until(lambda: len(r.collector.received) == 1, "the send")
            stopping = asyncio.create_task(r.shipper.stop(flush_timeout_s=5))
            await asyncio.sleep(0)  # let stop() start waiting before acks flow
            assert not stopping.done()
            r.collector.ack_gate.set()
            await asyncio.wait_for(stopping, 5)
            assert r.spool.stats().batches == 0

    run(body())


def test_flush_time_bounds_stop_when_acks_never_come(tmp_path: Path) -> None:
    async def body() -> None:
        async with rig(tmp_path) as r:
            r.collector.ack_gate.clear()
            r.append()
            await r.changes.wait_until(lambda: len(r.collector.received) == 1, "the send")
            await asyncio.wait_for(r.shipper.stop(flush_timeout_s=0.2), 2)
            assert r.spool.stats().batches == 1

    run(body())


def test_stop_does_not_wait_for_a_hanging_hello(tmp_path: Path) -> None:
    async def body() -> None:
        async with rig(tmp_path) as r:
            r.collector.hello_gate.clear()
            await r.changes.wait_until(lambda: bool(r.collector.hellos), "a Hello")
            await r.shipper.stop(flush_timeout_s=5)
            assert r.task is not None
            await asyncio.wait_for(r.task, 1)
            assert r.shipper.dealer_id is None

    run(body())


def test_a_connection_lost_during_the_flush_ends_the_flush(tmp_path: Path) -> None:
    async def body() -> None:
        async with rig(tmp_path) as r:
            r.collector.ack_gate.clear()
            r.append()
            await r.changes.wait_until(lambda: len(r.collector.received) == 1, "the send")
            loop = asyncio.get_running_loop()
            started = loop.time()
            stopping = asyncio.create_task(r.shipper.stop(flush_timeout_s=5))
            assert r.collector.server is not None
            await r.collector.server.stop(grace=None)
            await asyncio.wait_for(stopping, 5)
            assert loop.time() - started < 2.5  # well before the 5 s flush time
            assert r.spool.stats().batches == 1  # kept for the next start

    run(body())


def test_a_collector_that_stops_acking_is_left_and_the_batch_resent(tmp_path: Path) -> None:
    async def body() -> None:
        settings = ShipperSettings(ack_timeout_s=0.2)
        async with rig(tmp_path, settings=settings) as r:
            r.collector.ack_gate.clear()  # wedged: reads, never answers
            r.append()
            await r.changes.wait_until(lambda: len(r.collector.stream_starts) == 2, "a reconnect")
            assert "no ack for" in r.backoffs[0][1]
            r.collector.ack_gate.set()
            await r.wait_until_spool_empty()
            assert r.collector.seqs().count(1) >= 2

    run(body())


def test_duplicate_ack_settles_the_batch(tmp_path: Path) -> None:
    async def body() -> None:
        async with rig(tmp_path) as r:
            r.collector.duplicate.add(1)
            r.append()
            await r.wait_until_spool_empty()
            assert r.acks == [(1, AckStatus.DUPLICATE, 0)]
            assert r.spool.stats().stored == 3

    run(body())


def test_unreachable_collector_backs_off_and_stop_returns_promptly(tmp_path: Path) -> None:
    async def body() -> None:
        spool = SqliteSpool(tmp_path / "s.db", dealer_id=DEALER)
        changes = Changes()
        backoffs: list[float] = []

        def on_backoff(delay: float, reason: str) -> None:
            backoffs.append(delay)
            changes.pulse()

        # Port 1 on loopback: nothing listens there, the connect is refused.
        shipper = Shipper(
            Endpoint("127.0.0.1:1", TOKEN), spool, backoff=FAST, on_backoff=on_backoff
        )
        task = asyncio.create_task(shipper.run())
        await changes.wait_until(lambda: len(backoffs) >= 3, "three backoffs")
        assert not shipper.connected
        await shipper.stop(flush_timeout_s=5)
        await asyncio.wait_for(task, 2)
        spool.close()

    run(body())


def test_ack_messages_decode_through_the_codec() -> None:
    # The test collector and the agent agree on the wire: STORED carries a count.
    ack = pb.Ack(seq=9, status=pb.Ack.STORED, samples_stored=4)
    from agent.codec import decode_ack

    assert decode_ack(ack.SerializeToString()).samples_stored == 4
