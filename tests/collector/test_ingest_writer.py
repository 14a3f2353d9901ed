"""The batch writer on the real store: group commit, backpressure, retries, draining."""

from __future__ import annotations

import asyncio
import threading
import urllib.request
import zlib
from collections.abc import Sequence
from datetime import UTC, datetime

import grpc
import pytest
from ingest_batches import good_batch
from ingest_harness import (
    WAIT_S,
    DelegatingStore,
    FailingStore,
    HeldStore,
    add_dealer,
    run,
    wait_until,
    within,
)
from prometheus_client.parser import text_string_to_metric_families

from collector.abc import MetricStore, StoreError
from collector.ingest.errors import BatchRefused, Overloaded, StoreUnavailable, WriterClosed
from collector.ingest.writer import BatchWriter, RetryPolicy, batch_weight
from collector.metrics_http import CollectorMetrics, serve_metrics
from dealerpulse.clock import FakeClock, unix_ms
from dealerpulse.model import MetricBatch, WriteOutcome, WriteResult

FAST_RETRY = RetryPolicy(attempts=3, base_delay_s=0.01, max_delay_s=0.02)


class Scene:
    """A dealer in the real store and batches of one agent of it."""

    def __init__(self, store: MetricStore) -> None:
        self.clock = FakeClock(datetime.now(UTC).replace(microsecond=0))
        self.dealer_id, _ = add_dealer(store, self.clock)
        self.store = store

    def batches(self, agent_id: str, count: int, first_seq: int = 1) -> list[MetricBatch]:
        now_ms = unix_ms(self.clock)
        return [
            good_batch(self.dealer_id, agent_id, seq, now_ms)
            for seq in range(first_seq, first_seq + count)
        ]

    def writer(self, store: MetricStore, **overrides: float) -> BatchWriter:
        options: dict[str, float] = {
            "max_queue_samples": 10_000,
            "max_group_samples": 10_000,
            "max_group_delay_s": 0.0,
            "shards": 1,
        }
        options.update(overrides)
        writer = BatchWriter(
            store,
            max_queue_samples=int(options["max_queue_samples"]),
            max_group_samples=int(options["max_group_samples"]),
            max_group_delay_s=options["max_group_delay_s"],
            clock=self.clock,
            retry=FAST_RETRY,
            shards=int(options["shards"]),
        )
        writer.start()
        return writer


async def queue_behind_a_held_commit(
    writer: BatchWriter, held: HeldStore, batches: Sequence[MetricBatch]
) -> list[asyncio.Task[WriteResult]]:
    """Submit the first batch, wait until its write is held, then queue the rest behind it."""
    first, *rest = batches
    submitted = [asyncio.create_task(writer.submit(first))]
    await wait_until(held.writing.is_set, "the first write to start")
    submitted += [asyncio.create_task(writer.submit(b)) for b in rest]
    queued = len(rest)
    await wait_until(lambda: writer.stats().queued_batches == queued, f"{queued} queued batches")
    return submitted


def test_batches_queued_behind_a_slow_commit_go_in_one_transaction(store: MetricStore) -> None:
    scene = Scene(store)
    held = HeldStore(store)

    async def scenario() -> None:
        writer = scene.writer(held)
        submitted = await queue_behind_a_held_commit(writer, held, scene.batches("agent-g", 21))
        held.released.set()
        results = await within(asyncio.gather(*submitted))
        assert [r.outcome for r in results] == [WriteOutcome.STORED] * 21
        stats = writer.stats()
        assert (stats.groups_committed, stats.batches_committed) == (2, 21)
        assert stats.last_group_batches == 20
        assert stats.samples_written == 21 * 3
        assert held.write_calls == 2
        assert await within(writer.drain_and_stop(5)) is True

    run(scenario())
    assert store.count_samples("agent-g") == 63
    assert sorted(store.committed_batches("agent-g")) == list(range(1, 22))


def test_a_full_queue_refuses_at_once_and_stays_bounded(store: MetricStore) -> None:
    scene = Scene(store)
    held = HeldStore(store)
    batches = scene.batches("agent-q", 6)
    weight = batch_weight(batches[0])
    bound = 2 * weight + 1  # room for two queued batches, not three

    async def scenario() -> None:
        writer = scene.writer(held, max_queue_samples=bound)
        in_write = asyncio.create_task(writer.submit(batches[0]))
        await wait_until(held.writing.is_set, "the first write to start")
        queued = [asyncio.create_task(writer.submit(b)) for b in batches[1:3]]
        await wait_until(lambda: writer.stats().queued_batches == 2, "two queued batches")
        for batch in batches[3:]:
            with pytest.raises(Overloaded) as refused:
                await within(writer.submit(batch))
            assert 0 < refused.value.retry_after_s <= 10
        stats = writer.stats()
        assert stats.queued_samples <= bound
        assert stats.submissions_refused == 3
        held.released.set()
        results = await within(asyncio.gather(in_write, *queued))
        assert [r.outcome for r in results] == [WriteOutcome.STORED] * 3
        await within(writer.drain_and_stop(5))

    run(scenario())
    assert sorted(store.committed_batches("agent-q")) == [1, 2, 3]


def test_a_store_that_comes_back_is_retried(store: MetricStore) -> None:
    scene = Scene(store)
    flaky = FailingStore(store, failures=2)

    async def scenario() -> None:
        writer = scene.writer(flaky)
        result = await within(writer.submit(scene.batches("agent-r", 1)[0]))
        assert result.outcome is WriteOutcome.STORED
        assert flaky.write_calls == 3
        await within(writer.drain_and_stop(5))

    run(scenario())
    assert store.committed_batches("agent-r") == {1: 3}


def test_a_store_that_stays_down_fails_the_group_and_acks_nothing(store: MetricStore) -> None:
    scene = Scene(store)
    down = FailingStore(store, failures=1_000)

    async def scenario() -> None:
        writer = scene.writer(down)
        with pytest.raises(StoreUnavailable, match="simulated database restart"):
            await within(writer.submit(scene.batches("agent-d", 1)[0]))
        assert down.write_calls == FAST_RETRY.attempts
        assert writer.stats().groups_failed == 1
        await within(writer.drain_and_stop(5))

    run(scenario())
    assert store.committed_batches("agent-d") == {}


def test_drain_commits_everything_queued_then_refuses(store: MetricStore) -> None:
    scene = Scene(store)
    held = HeldStore(store)

    async def scenario() -> None:
        writer = scene.writer(held)
        batches = scene.batches("agent-s", 5)
        pending = [asyncio.create_task(writer.submit(b)) for b in batches]
        await wait_until(held.writing.is_set, "the first write to start")
        drained = asyncio.create_task(writer.drain_and_stop(10))
        with pytest.raises(WriterClosed):
            await within(writer.submit(scene.batches("agent-s", 1, first_seq=6)[0]))
        held.released.set()
        assert await within(drained) is True
        results = await within(asyncio.gather(*pending))
        assert all(r.outcome is WriteOutcome.STORED for r in results)

    run(scenario())
    assert sorted(store.committed_batches("agent-s")) == [1, 2, 3, 4, 5]


def test_drain_that_runs_out_of_time_fails_what_is_left(store: MetricStore) -> None:
    scene = Scene(store)
    held = HeldStore(store)

    async def scenario() -> None:
        writer = scene.writer(held)
        first, second = scene.batches("agent-t", 2)
        in_write = asyncio.create_task(writer.submit(first))
        await wait_until(held.writing.is_set, "the first write to start")
        queued = asyncio.create_task(writer.submit(second))
        await wait_until(lambda: writer.stats().queued_batches == 1, "one queued batch")
        assert await within(writer.drain_and_stop(0.05)) is False
        with pytest.raises(WriterClosed):
            await within(queued)
        held.released.set()  # the write in progress still completes and is reported
        assert (await within(in_write)).outcome is WriteOutcome.STORED

    run(scenario())
    assert sorted(store.committed_batches("agent-t")) == [1]


def test_one_refused_batch_does_not_sink_its_group(store: MetricStore) -> None:
    scene = Scene(store)
    other = Scene(store)  # a second dealer in the same store
    held = HeldStore(store)

    async def scenario() -> None:
        writer = scene.writer(held)
        held.released.set()
        assert (await within(writer.submit(scene.batches("agent-a", 1)[0]))).outcome is (
            WriteOutcome.STORED
        )
        held.released.clear()
        held.writing.clear()
        blocker = asyncio.create_task(writer.submit(scene.batches("agent-a", 1, first_seq=2)[0]))
        await wait_until(held.writing.is_set, "the blocking write to start")
        # The other dealer's agent claims agent-a's id, between two honest batches.
        group = [
            scene.batches("agent-b", 1)[0],
            other.batches("agent-a", 1, first_seq=50)[0],
            scene.batches("agent-c", 1)[0],
        ]
        pending = [asyncio.create_task(writer.submit(b)) for b in group]
        await wait_until(lambda: writer.stats().queued_batches == 3, "the group queued")
        held.released.set()
        assert (await within(blocker)).outcome is WriteOutcome.STORED
        first, claimed, last = await within(asyncio.gather(*pending, return_exceptions=True))
        assert isinstance(first, WriteResult) and first.outcome is WriteOutcome.STORED
        assert isinstance(last, WriteResult) and last.outcome is WriteOutcome.STORED
        assert isinstance(claimed, BatchRefused)
        assert claimed.rejection.code == grpc.StatusCode.PERMISSION_DENIED
        assert claimed.rejection.field == "agent_id"
        await within(writer.drain_and_stop(5))

    run(scenario())
    assert sorted(store.committed_batches("agent-a")) == [1, 2]
    assert sorted(store.committed_batches("agent-b")) == [1]
    assert sorted(store.committed_batches("agent-c")) == [1]


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="max_queue_samples"):
        BatchWriter(
            None,  # type: ignore[arg-type]
            max_queue_samples=0,
            max_group_samples=1,
            max_group_delay_s=0,
            clock=FakeClock(),
        )


# ---- shards: several writer threads, each with its own agents


def _agents_in_other_shards(shards: int) -> tuple[str, str]:
    """Two agent ids that the writer puts into different shards."""
    names = [f"agent-s{i}" for i in range(50)]
    first = names[0]
    other = next(
        n for n in names if zlib.crc32(n.encode()) % shards != zlib.crc32(first.encode()) % shards
    )
    return first, other


class AgentHeldStore(DelegatingStore):
    """Writes holding batches of one agent wait until released; the others go through."""

    def __init__(self, inner: MetricStore, held_agent: str) -> None:
        super().__init__(inner)
        self.held_agent = held_agent
        self.released = threading.Event()
        self.writing = threading.Event()

    def write_batches(
        self, batches: Sequence[MetricBatch], received_at: datetime
    ) -> list[WriteResult]:
        if any(b.agent_id == self.held_agent for b in batches):
            self.writing.set()
            if not self.released.wait(WAIT_S):
                raise StoreError("test store held longer than the test's patience")
        return super().write_batches(batches, received_at)


def test_a_slow_shard_does_not_hold_back_the_agents_of_another(store: MetricStore) -> None:
    scene = Scene(store)
    slow_agent, fast_agent = _agents_in_other_shards(2)
    held = AgentHeldStore(store, slow_agent)

    async def scenario() -> None:
        writer = scene.writer(held, shards=2)
        slow = asyncio.create_task(writer.submit(scene.batches(slow_agent, 1)[0]))
        await wait_until(held.writing.is_set, "the slow agent's write to start")
        fast = await within(writer.submit(scene.batches(fast_agent, 1)[0]))
        assert fast.outcome is WriteOutcome.STORED and not slow.done()
        held.released.set()
        assert (await within(slow)).outcome is WriteOutcome.STORED
        assert await writer.drain_and_stop(5.0)

    run(scenario())


def test_shards_store_every_batch_once_under_concurrent_resends(store: MetricStore) -> None:
    scene = Scene(store)
    agents = [f"agent-c{i}" for i in range(9)]

    async def scenario() -> None:
        writer = scene.writer(store, shards=3, max_group_samples=12)
        sent = [b for agent in agents for b in scene.batches(agent, 8)]
        # Every batch twice in a row, as an agent resends after a lost ack.
        submitted = [b for b in sent for _ in range(2)]
        results = await within(asyncio.gather(*(writer.submit(b) for b in submitted)))
        assert await writer.drain_and_stop(5.0)
        by_key: dict[tuple[str, int], list[str]] = {}
        for batch, result in zip(submitted, results, strict=True):
            by_key.setdefault((batch.agent_id, batch.seq), []).append(result.outcome.value)
        assert all(sorted(o) == ["duplicate", "stored"] for o in by_key.values()), by_key
        for agent in agents:
            expected = sum(len(b.samples) for b in sent if b.agent_id == agent)
            assert store.count_samples(agent) == expected

    run(scenario())


def test_queue_waits_and_commit_times_are_histograms_on_the_metrics_page(
    store: MetricStore,
) -> None:
    """A commit held for 2 s: the 20 batches queued behind it waited 2 s each; /metrics says so."""
    scene = Scene(store)
    held = HeldStore(store)
    held_s = 2.0

    async def scenario() -> str:
        writer = scene.writer(held)
        submitted = await queue_behind_a_held_commit(writer, held, scene.batches("agent-t", 21))
        scene.clock.advance(held_s)  # the database took 2 s over the first group
        held.released.set()
        await within(asyncio.gather(*submitted))
        page = CollectorMetrics(writer.stats, lambda: None, writer_timings=lambda: writer.timings)
        metrics = serve_metrics("127.0.0.1:0", page)
        try:
            url = f"http://127.0.0.1:{metrics.port}/metrics"
            text = await asyncio.to_thread(_fetch, url)
        finally:
            metrics.stop()
        assert await within(writer.drain_and_stop(5)) is True
        return text

    histograms = _histograms(run(scenario()))
    waits = histograms["dealerpulse_writer_queue_wait_seconds"]
    # The first batch went straight in; the other 20 waited out the held commit.
    assert (waits["count"], waits["sum"]) == (21, 20 * held_s)
    assert (waits["0.001"], waits["1.0"], waits["2.5"]) == (1, 1, 21)
    commits = histograms["dealerpulse_writer_commit_seconds"]
    assert (commits["count"], commits["sum"]) == (2, held_s)
    assert (commits["1.0"], commits["2.5"]) == (1, 2)
    groups = histograms["dealerpulse_writer_group_batches"]
    assert (groups["count"], groups["sum"]) == (2, 21)
    assert (groups["1.0"], groups["10.0"], groups["20.0"]) == (1, 1, 2)


def _fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as answer:
        body: bytes = answer.read()
    return body.decode()


def _histograms(text: str) -> dict[str, dict[str, float]]:
    """name -> {"count", "sum", and each bucket's upper bound: cumulative count}."""
    found: dict[str, dict[str, float]] = {}
    for family in text_string_to_metric_families(text):
        if family.type != "histogram":
            continue
        figures = found.setdefault(family.name, {})
        for sample in family.samples:
            if sample.name.endswith("_bucket"):
                figures[sample.labels["le"]] = sample.value
            elif sample.name.endswith(("_count", "_sum")):
                figures[sample.name.rsplit("_", 1)[1]] = sample.value
    return found
