"""The agent's sample form: columns for a collector that reads them, rows otherwise.

The rule under test (agent/shipper.py): the form is chosen when the spool
encodes a batch and the stored bytes never change; a columns batch goes to a
rows-only collector in its rows form; a "seq stored with different content"
answer for a columns batch means its other form was committed: a DUPLICATE.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from agent_testkit import DEALER, TOKEN, Changes, ScriptedCollector, run, serving

from agent.backoff import BackoffPolicy
from agent.codec import Ack, AckStatus, encode_batch, has_sample_columns, rows_form
from agent.connection import Endpoint
from agent.shipper import Shipper
from agent.spool import SENT_AS_ROWS_OF_COLUMNS, SENT_AS_STORED, SqliteSpool
from collector.abc import MetricStore
from collector.ingest import codec as collector_codec
from collector.server import CollectorServer
from dealerpulse.model import AgentCounters, Gap, MetricBatch, Sample
from dealerpulse.tokens import hash_token, new_token
from dealerpulse.v1 import ingest_pb2 as pb

FAST = BackoffPolicy(initial_s=0.01, max_s=0.05, jitter=0.1, slow_s=0.05)
AGENT_ID = "agent-columns-1"


def host_samples(count: int, time_ms: int) -> list[Sample]:
    """Samples with repeated names, units and label sets (what columns share)."""
    return [
        Sample(
            f"test.metric{i % 3}",
            i * 1.5,
            ("percent", "bytes")[i % 2],
            time_ms + i,
            (("disk", f"sd{i % 4}"), ("host", "h1")),
        )
        for i in range(count)
    ]


def metric_batch(samples: list[Sample]) -> MetricBatch:
    return MetricBatch(
        agent_id=AGENT_ID,
        dealer_id=DEALER,
        seq=7,
        boot_id="boot",
        hostname="host-1",
        agent_version="1.0",
        created_ms=1_700_000_000_000,
        samples=tuple(samples),
        gaps=(Gap(1, 2, 10, 20, 2, 5, "spool_full"),),
        counters=AgentCounters(generated_samples=9, dropped_samples=(("spool_full", 5),)),
    )


# ---- the codec's part


@pytest.mark.parametrize("count", [0, 1, 40])
def test_rows_form_of_a_columns_batch_is_the_batch_encoded_as_rows(count: int) -> None:
    batch = metric_batch(host_samples(count, 1_700_000_000_000))
    as_columns = encode_batch(batch, columnar=True)
    as_rows = encode_batch(batch)
    assert has_sample_columns(as_columns) == (count > 0)
    assert not has_sample_columns(as_rows)
    assert rows_form(as_columns) == as_rows
    assert rows_form(as_rows) is as_rows  # nothing to convert: the stored bytes as they are


def test_only_the_collectors_conflict_rejection_counts_as_a_seq_conflict() -> None:
    conflict = Ack(5, AckStatus.REJECTED, code=3, field="seq", message="already stored")
    assert conflict.is_seq_conflict
    assert not Ack(5, AckStatus.REJECTED, code=3, field="samples[0].value").is_seq_conflict
    assert not Ack(5, AckStatus.DUPLICATE).is_seq_conflict


# ---- the spool's part


def test_the_spool_encodes_in_the_form_last_asked_for_and_remembers_it(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    with SqliteSpool(path, dealer_id=DEALER) as spool:
        assert not spool.sample_columns  # until a collector says it reads columns
        rows_seq = spool.append(host_samples(3, 1_700_000_000_000))
        spool.use_sample_columns(True)
        columns_seq = spool.append(host_samples(3, 1_700_000_000_000))
    with SqliteSpool(path, dealer_id=DEALER) as spool:
        assert spool.sample_columns
        stored = {b.seq: b.payload for b in spool.pending()}
        assert not has_sample_columns(stored[rows_seq])
        assert has_sample_columns(stored[columns_seq])
        spool.use_sample_columns(False)
    with SqliteSpool(path, dealer_id=DEALER) as spool:
        assert not spool.sample_columns


# ---- against a scripted collector (records the Batch messages it receives)


@dataclass
class Shipping:
    changes: Changes
    spool: SqliteSpool
    shipper: Shipper
    acks: list[tuple[int, AckStatus, int]]

    def drained(self) -> Callable[[], bool]:
        return lambda: self.spool.stats().batches == 0


@asynccontextmanager
async def shipping(
    address: str, spool: SqliteSpool, token: str, changes: Changes
) -> AsyncIterator[Shipping]:
    acks: list[tuple[int, AckStatus, int]] = []

    def on_ack(seq: int, status: AckStatus, stored: int) -> None:
        acks.append((seq, status, stored))
        changes.pulse()

    shipper = Shipper(
        Endpoint(address, token), spool, backoff=FAST, rng=random.Random(3), on_ack=on_ack
    )
    task = asyncio.create_task(shipper.run())
    try:
        yield Shipping(changes, spool, shipper, acks)
    finally:
        await shipper.stop(flush_timeout_s=0)
        await asyncio.wait_for(task, 5)


def test_a_rows_only_collector_gets_rows_even_for_batches_spooled_as_columns(
    tmp_path: Path,
) -> None:
    async def body() -> None:
        changes = Changes()
        collector = ScriptedCollector(changes)  # its Hello does not advertise columns
        async with serving(collector) as address:
            with SqliteSpool(tmp_path / "s.db", dealer_id=DEALER, agent_id=AGENT_ID) as spool:
                spool.use_sample_columns(True)  # as if the last collector read columns
                spool.append(host_samples(5, 1_700_000_000_000))
                [spooled] = spool.pending()
                async with shipping(address, spool, TOKEN, changes) as s:
                    await changes.wait_until(s.drained(), "the batch to be acked")
                    assert not spool.sample_columns  # learned from this Hello
                    spool.append(host_samples(2, 1_700_000_000_000))
                    s.shipper.notify()
                    await changes.wait_until(s.drained(), "the second batch to be acked")
        first, second = collector.decoded(0), collector.decoded(1)
        assert not first.HasField("sample_columns") and len(first.samples) == 5
        assert collector.received[0].payload == rows_form(spooled.payload)
        assert not second.HasField("sample_columns") and len(second.samples) == 2
        assert s.acks == [(1, AckStatus.STORED, 5), (2, AckStatus.STORED, 2)]

    run(body())


def test_a_collector_that_reads_columns_gets_columns(tmp_path: Path) -> None:
    async def body() -> None:
        changes = Changes()
        collector = ScriptedCollector(changes)
        collector.accepts_sample_columns = True
        async with serving(collector) as address:
            with SqliteSpool(tmp_path / "s.db", dealer_id=DEALER, agent_id=AGENT_ID) as spool:
                spool.append(host_samples(4, 1_700_000_000_000))  # before any Hello: rows
                async with shipping(address, spool, TOKEN, changes) as s:
                    await changes.wait_until(s.drained(), "the first batch to be acked")
                    assert spool.sample_columns
                    spool.append(host_samples(4, 1_700_000_000_000))
                    s.shipper.notify()
                    await changes.wait_until(s.drained(), "the second batch to be acked")
        rows, columns = collector.decoded(0), collector.decoded(1)
        assert len(rows.samples) == 4 and not rows.HasField("sample_columns")
        assert not columns.samples and len(columns.sample_columns.values) == 4
        assert [stored for _, _, stored in s.acks] == [4, 4]

    run(body())


# ---- against the real collector and store


def add_dealer(store: MetricStore, dealer_id: str) -> str:
    """Registers the dealer; its token."""
    token = new_token(dealer_id)
    store.create_dealer(dealer_id, dealer_id.title(), hash_token(token), datetime.now(UTC))
    return token


@asynccontextmanager
async def real_collector(store: MetricStore) -> AsyncIterator[str]:
    """A real collector on 127.0.0.1:<free port> writing to ``store``; its address."""
    server = CollectorServer(store, "127.0.0.1:0")
    port = await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(5.0)


@pytest.fixture
def rows_only_hello(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[bool], None]]:
    """Makes the real collector's Hello say (or not) that it reads columns, as an
    older collector would; it still decodes whatever it is sent."""
    real = collector_codec.encode_hello_response

    def switch(rows_only: bool) -> None:
        def hello(*args: object, **kwargs: object) -> pb.HelloResponse:
            reply = real(*args, **kwargs)  # type: ignore[arg-type]
            reply.accepts_sample_columns = not rows_only
            return reply

        monkeypatch.setattr(collector_codec, "encode_hello_response", hello)

    yield switch


def stored_samples(store: MetricStore, dealer_id: str, agent_id: str) -> list[tuple[object, ...]]:
    start = datetime.now(UTC) - timedelta(hours=1)
    end = datetime.now(UTC) + timedelta(hours=1)
    found: list[tuple[object, ...]] = []
    for name in ("test.metric0", "test.metric1", "test.metric2"):
        for s in store.query_samples(dealer_id, name, start, end, agent_id):
            found.append((name, s.labels, s.unit, s.value, s.time))
    return sorted(found, key=repr)


def now_ms() -> int:
    return int(time.time() * 1000)


def test_samples_arrive_stored_identically_in_both_forms(
    store: MetricStore, tmp_path: Path
) -> None:
    async def body() -> None:
        changes = Changes()
        samples = host_samples(30, now_ms() - 60_000)
        token = await asyncio.to_thread(add_dealer, store, "columns-motors")
        async with real_collector(store) as address:
            agents = {"agent-rows": False, "agent-cols": True}
            for agent_id, columnar in agents.items():
                path = tmp_path / f"{agent_id}.db"
                with SqliteSpool(path, dealer_id="columns-motors", agent_id=agent_id) as spool:
                    spool.use_sample_columns(columnar)
                    spool.append(samples)
                    assert has_sample_columns(spool.pending()[0].payload) == columnar
                    async with shipping(address, spool, token, changes) as s:
                        await changes.wait_until(s.drained(), f"{agent_id}'s batch", 15)
                    assert s.acks == [(1, AckStatus.STORED, 30)]
                    assert spool.sample_columns  # the real collector reads columns
        as_rows = stored_samples(store, "columns-motors", "agent-rows")
        as_columns = stored_samples(store, "columns-motors", "agent-cols")
        assert len(as_rows) == 30
        assert as_rows == as_columns

    run(body(), timeout_s=60)


@pytest.mark.parametrize(
    ("first_rows_only", "then_rows_only"),
    [(False, False), (False, True), (True, False), (True, True)],
    ids=["columns-then-columns", "columns-then-rows-only", "rows-only-then-columns", "rows-only"],
)
def test_a_resend_after_a_lost_ack_is_a_duplicate_whatever_the_collectors_read(
    store: MetricStore,
    tmp_path: Path,
    rows_only_hello: Callable[[bool], None],
    monkeypatch: pytest.MonkeyPatch,
    first_rows_only: bool,
    then_rows_only: bool,
) -> None:
    """A batch spooled as columns is committed but its ack never reaches the spool;
    after a restart it is resent to a collector of either kind on the same store."""

    async def body() -> None:
        changes = Changes()
        token = await asyncio.to_thread(add_dealer, store, "resend-motors")
        path = tmp_path / "spool.db"
        with SqliteSpool(path, dealer_id="resend-motors", agent_id=AGENT_ID) as spool:
            spool.use_sample_columns(True)  # spooled while a columns collector was connected
            spool.append(host_samples(12, now_ms() - 60_000))
        for attempt, rows_only in enumerate([first_rows_only, then_rows_only]):
            rows_only_hello(rows_only)
            async with real_collector(store) as address:
                with SqliteSpool(path, dealer_id="resend-motors") as spool:
                    if attempt == 0:  # the ack is lost: the spool never hears of it
                        monkeypatch.setattr(spool, "ack", lambda seq: False)
                    async with shipping(address, spool, token, changes) as s:
                        await changes.wait_until(lambda: bool(s.acks), f"attempt {attempt}", 15)
                    expected = AckStatus.STORED if attempt == 0 else AckStatus.DUPLICATE
                    assert [(seq, status) for seq, status, _ in s.acks] == [(1, expected)]
                    stats = spool.stats()
                    assert stats.dropped_total == 0
                    assert stats.batches == (1 if attempt == 0 else 0)
        assert store.committed_batches(AGENT_ID) == {1: 12}
        assert store.count_samples(AGENT_ID) == 12
        assert not store.list_gaps("resend-motors")

    run(body(), timeout_s=60)


def test_a_conflict_for_a_batch_sent_in_one_form_only_stays_a_rejection(tmp_path: Path) -> None:
    """A seq truly reused (say, a spool re-created under a configured agent id) is not
    mistaken for the other form of the same batch: dropped, counted, reported."""

    async def body() -> None:
        changes = Changes()
        collector = ScriptedCollector(changes)
        collector.accepts_sample_columns = True
        collector.conflict.add(1)
        async with serving(collector) as address:
            with SqliteSpool(tmp_path / "s.db", dealer_id=DEALER, agent_id=AGENT_ID) as spool:
                spool.use_sample_columns(True)
                spool.append(host_samples(5, 1_700_000_000_000))
                async with shipping(address, spool, TOKEN, changes) as s:
                    await changes.wait_until(s.drained(), "the batch to be settled")
                assert s.acks == [(1, AckStatus.REJECTED, 0)]
                assert spool.stats().dropped == {"rejected": 5}

    run(body())


def test_a_new_spools_agent_id_is_a_version_4_uuid(tmp_path: Path) -> None:
    # Made without the uuid module (agent footprint); it must read as uuid4() would.
    import uuid

    with SqliteSpool(tmp_path / "spool.db", dealer_id=DEALER) as spool:
        parsed = uuid.UUID(spool.agent_id)
    assert parsed.version == 4 and parsed.variant == uuid.RFC_4122
    assert str(parsed) == spool.agent_id


def test_how_a_batch_was_sent_is_remembered_until_it_leaves_the_spool(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    with SqliteSpool(path, dealer_id=DEALER) as spool:
        seq = spool.append(host_samples(2, 1_700_000_000_000))
        assert spool.sent_forms(seq) == 0
        spool.note_sent(seq, SENT_AS_STORED)
        spool.note_sent(seq, SENT_AS_ROWS_OF_COLUMNS)
    with SqliteSpool(path, dealer_id=DEALER) as spool:  # an ack lost with a restart
        assert spool.sent_forms(seq) == SENT_AS_STORED | SENT_AS_ROWS_OF_COLUMNS
        spool.ack(seq)
        assert spool.sent_forms(seq) == 0
