"""A real collector forwards what it stores to a local OTLP receiver, and a slow, dead or
recovering endpoint never holds up ingest: acks come while the export is stuck."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import grpc
import pytest

from agent.codec import encode_batch
from collector.abc import MetricStore
from collector.admin import add_dealer
from collector.server import CollectorServer
from collector.settings import CollectorSettings
from collector.store import SQLAlchemyMetricStore, open_store
from dealerpulse.clock import FakeClock, unix_ms
from dealerpulse.model import MetricBatch
from dealerpulse.v1 import ingest_pb2 as pb
from dealerpulse.v1 import ingest_pb2_grpc as pb_grpc

from .batches import make_batch
from .receiver import WAIT_S, Answer, OtlpReceiver, closed_port, running_receiver, wait_until

T = TypeVar("T")
DD_KEY = "dd-0123456789abcdef0123456789abcdef"
NR_KEY = "nr-0123456789abcdef0123456789abcdef"


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(asyncio.wait_for(coro, 90.0))


@pytest.fixture
def sqlite_store(sqlite_url: str) -> Any:
    opened = open_store(sqlite_url, pool_size=5)
    yield opened
    opened.close()


@dataclass
class Running:
    server: CollectorServer
    dealer_id: str
    token: str
    stub: pb_grpc.IngestStub
    clock: FakeClock

    def batch(self, agent_id: str, seq: int) -> MetricBatch:
        return make_batch(self.dealer_id, agent_id, seq, unix_ms(self.clock))

    async def send_all(self, batches: list[MetricBatch]) -> list[pb.Ack]:
        """One stream, like an agent: every batch sent, every ack read (bounded waits)."""
        call = self.stub.Stream(metadata=(("authorization", f"Bearer {self.token}"),))
        acks: list[pb.Ack] = []
        for batch in batches:
            await asyncio.wait_for(call.write(pb.Batch.FromString(encode_batch(batch))), WAIT_S)
            acks.append(await asyncio.wait_for(call.read(), WAIT_S))
        await asyncio.wait_for(call.done_writing(), WAIT_S)
        return acks


@asynccontextmanager
async def running_collector(store: MetricStore, **export: Any) -> AsyncIterator[Running]:
    clock = FakeClock(datetime.now(UTC).replace(microsecond=0))
    dealer, token = await asyncio.to_thread(
        add_dealer, store, "Export Motors", f"dealer-{uuid.uuid4().hex[:8]}", clock
    )
    settings = CollectorSettings(alerting=False, **export)
    server = CollectorServer(store, "127.0.0.1:0", settings, clock)
    port = await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    stub = pb_grpc.IngestStub(channel)  # type: ignore[no-untyped-call]
    try:
        yield Running(server, dealer.dealer_id, token, stub, clock)
    finally:
        await channel.close(None)
        await server.stop(2.0)


def test_everything_stored_arrives_once_with_its_attributes_and_headers(
    store: SQLAlchemyMetricStore,
) -> None:
    async def scenario() -> None:
        async with (
            running_receiver() as receiver,
            running_collector(
                store,
                otlp_export_endpoint=f"127.0.0.1:{receiver.port}",
                otlp_export_headers=(("x-tenant", "dealers-eu"),),
                datadog_api_key=DD_KEY,
                new_relic_license_key=NR_KEY,
            ) as collector,
        ):
            sent = [
                collector.batch(agent, seq) for agent in ("agent-a", "agent-b") for seq in (1, 2, 3)
            ]
            acks = await collector.send_all(sent)
            assert [ack.status for ack in acks] == [pb.Ack.STORED] * 6
            # A resend is acked as a duplicate and not exported again.
            [again] = await collector.send_all(sent[:1])
            assert again.status == pb.Ack.DUPLICATE
            await wait_until(lambda: collector.server.export_stats().exported == 6, "export")
            gauges = sorted(
                (p.resource["agent.id"], p.metric, p.value, tuple(p.attributes.items()))
                for p in receiver.gauge_points()
            )
            assert gauges == sorted(
                (b.agent_id, s.name, s.value, s.labels) for b in sent for s in b.samples
            )
            for point in receiver.points():
                assert point.resource["dealer.id"] == collector.dealer_id
                assert point.resource["host.name"] == "dms-01"
                assert point.resource["service.name"] == "dealerpulse-agent"
            histograms = [p.value for p in receiver.points() if p.kind == "histogram"]
            assert sum(h.count for h in histograms) == sum(b.endpoints[0].count for b in sent)
            for headers in receiver.headers:
                assert (headers["x-tenant"], headers["dd-api-key"], headers["api-key"]) == (
                    "dealers-eu",
                    DD_KEY,
                    NR_KEY,
                )
            for agent in ("agent-a", "agent-b"):
                assert await asyncio.to_thread(store.count_samples, agent) == 9

    run(scenario())


def test_a_blocked_endpoint_does_not_hold_up_acks_and_drops_are_counted(
    sqlite_store: SQLAlchemyMetricStore,
) -> None:
    async def scenario() -> None:
        release = asyncio.Event()
        receiver = OtlpReceiver(default=Answer(hold=release))
        async with (
            running_receiver(receiver),
            running_collector(
                sqlite_store,
                otlp_export_endpoint=f"127.0.0.1:{receiver.port}",
                otlp_export_queue_batches=3,
                otlp_export_timeout_s=120.0,
            ) as collector,
        ):
            batches = [collector.batch("agent-a", seq) for seq in range(1, 21)]
            acks = await collector.send_all(batches)
            # Every batch acked while the endpoint sat on the first export request.
            assert [ack.status for ack in acks] == [pb.Ack.STORED] * 20
            assert receiver.holding == 1 and receiver.requests == []
            await wait_until(lambda: collector.server.export_stats().offered == 20, "offers")
            stats = collector.server.export_stats()
            assert stats.queued == 3
            assert stats.dropped_queue_full == 20 - 3 - stats.in_flight > 0
            release.set()
            exported = stats.in_flight + 3
            await wait_until(
                lambda: collector.server.export_stats().exported == exported, "the export"
            )
            # The newest three were kept in the queue.
            seqs = {int(p.value) // 100 for p in receiver.gauge_points()}
            assert {18, 19, 20} <= seqs and len(seqs) == exported

    run(scenario())


def test_a_dead_endpoint_does_not_hold_up_acks_and_stopping_is_bounded(
    sqlite_store: SQLAlchemyMetricStore,
) -> None:
    async def scenario() -> None:
        async with running_collector(
            sqlite_store,
            otlp_export_endpoint=f"127.0.0.1:{closed_port()}",
            otlp_export_queue_batches=3,
        ) as collector:
            acks = await collector.send_all([collector.batch("agent-a", s) for s in range(1, 11)])
            assert [ack.status for ack in acks] == [pb.Ack.STORED] * 10
            await wait_until(
                lambda: collector.server.export_stats().dropped_queue_full >= 10 - 3 - 10 // 2,
                "drops of a full queue",
            )
            stats = collector.server.export_stats()
            assert stats.exported == 0 and "UNAVAILABLE" in stats.last_error
            await collector.server.stop(0.5)
            stats = collector.server.export_stats()
            assert stats.queued == stats.in_flight == 0
            assert stats.offered == 10 == stats.dropped_queue_full + stats.dropped_at_shutdown

    run(scenario())


def test_an_endpoint_recovering_from_unavailable_gets_the_retried_data(
    sqlite_store: SQLAlchemyMetricStore,
) -> None:
    async def scenario() -> None:
        receiver = OtlpReceiver()
        for _ in range(3):
            receiver.answers.append(Answer(grpc.StatusCode.UNAVAILABLE, retry_delay_s=0.05))
        async with (
            running_receiver(receiver),
            running_collector(
                sqlite_store, otlp_export_endpoint=f"127.0.0.1:{receiver.port}"
            ) as collector,
        ):
            batches = [collector.batch("agent-a", seq) for seq in range(1, 6)]
            await collector.send_all(batches)
            await wait_until(lambda: collector.server.export_stats().exported == 5, "export")
            stats = collector.server.export_stats()
            assert (stats.failed, stats.dropped_queue_full) == (0, 0)
            assert stats.retries >= 3
            assert {int(p.value) // 100 for p in receiver.gauge_points()} == {1, 2, 3, 4, 5}

    run(scenario())
