"""A real collector on 127.0.0.1:0 with a real store, a real client, and store wrappers
that hold or fail writes (the real store does the work underneath)."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import grpc
from ingest_batches import encode, good_batch

from collector.abc import (
    AgentInfo,
    AgentRecord,
    Dealer,
    GapRecord,
    LatestSample,
    MetricStore,
    StoredSample,
    StoreError,
)
from collector.ingest.writer import RetryPolicy
from collector.server import CollectorServer
from collector.settings import CollectorSettings
from dealerpulse.clock import FakeClock, unix_ms
from dealerpulse.model import MetricBatch, WriteResult
from dealerpulse.tokens import hash_token, new_token
from dealerpulse.v1 import ingest_pb2 as pb
from dealerpulse.v1 import ingest_pb2_grpc as pb_grpc

T = TypeVar("T")
FAST_RETRY = RetryPolicy(attempts=3, base_delay_s=0.01, max_delay_s=0.05)
# The end-of-stream marker of grpc.aio reads; the type stubs do not list it.
EOF: Any = grpc.aio.EOF  # type: ignore[attr-defined]
WAIT_S = 20.0


def run(coro: Coroutine[Any, Any, T], timeout_s: float = 60.0) -> T:
    """Run a test scenario with an overall deadline."""
    return asyncio.run(asyncio.wait_for(coro, timeout_s))


async def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = WAIT_S) -> None:
    """Poll a condition (cheap, in-process) until it holds or the deadline passes."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.005)


async def within(awaitable: Awaitable[T], timeout_s: float = WAIT_S) -> T:
    return await asyncio.wait_for(awaitable, timeout_s)


class DelegatingStore(MetricStore):
    """Forwards everything to a real store; subclasses interfere with writes."""

    def __init__(self, inner: MetricStore) -> None:
        self.inner = inner
        self.write_calls = 0

    def write_batches(
        self, batches: Sequence[MetricBatch], received_at: datetime
    ) -> list[WriteResult]:
        self.write_calls += 1
        return self.inner.write_batches(batches, received_at)

    def migrate(self) -> None:
        self.inner.migrate()

    def create_dealer(self, dealer_id: str, name: str, token_hash: str, now: datetime) -> Dealer:
        return self.inner.create_dealer(dealer_id, name, token_hash, now)

    def get_dealer(self, dealer_id: str) -> Dealer | None:
        return self.inner.get_dealer(dealer_id)

    def list_dealers(self) -> list[Dealer]:
        return self.inner.list_dealers()

    def token_hashes(self, dealer_id: str) -> list[str]:
        return self.inner.token_hashes(dealer_id)

    def register_agent(self, agent: AgentInfo, now: datetime) -> int:
        return self.inner.register_agent(agent, now)

    def list_agents(self, dealer_id: str | None = None) -> list[AgentRecord]:
        return self.inner.list_agents(dealer_id)

    def latest_samples(
        self, dealer_id: str | None = None, names: Sequence[str] | None = None
    ) -> list[LatestSample]:
        return self.inner.latest_samples(dealer_id, names)

    def query_samples(
        self, dealer_id: str, name: str, start: datetime, end: datetime, agent_id: str | None = None
    ) -> list[StoredSample]:
        return self.inner.query_samples(dealer_id, name, start, end, agent_id)

    def count_samples(self, agent_id: str) -> int:
        return self.inner.count_samples(agent_id)

    def committed_batches(self, agent_id: str) -> dict[int, int]:
        return self.inner.committed_batches(agent_id)

    def list_gaps(self, dealer_id: str | None = None) -> list[GapRecord]:
        return self.inner.list_gaps(dealer_id)

    def close(self) -> None:
        self.inner.close()


class HeldStore(DelegatingStore):
    """Writes wait until released: a database that has fallen behind."""

    def __init__(self, inner: MetricStore) -> None:
        super().__init__(inner)
        self.released = threading.Event()
        self.writing = threading.Event()
        self.held_batches = 0

    def write_batches(
        self, batches: Sequence[MetricBatch], received_at: datetime
    ) -> list[WriteResult]:
        self.held_batches = len(batches)
        self.writing.set()
        if not self.released.wait(WAIT_S):
            raise StoreError("test store held longer than the test's patience")
        return super().write_batches(batches, received_at)


class FailingStore(DelegatingStore):
    """The first `failures` writes fail as if the database restarted; then it recovers."""

    def __init__(self, inner: MetricStore, failures: int) -> None:
        super().__init__(inner)
        self.failures = failures

    def write_batches(
        self, batches: Sequence[MetricBatch], received_at: datetime
    ) -> list[WriteResult]:
        self.write_calls += 1
        if self.write_calls <= self.failures:
            raise StoreError("connection refused (simulated database restart)")
        return self.inner.write_batches(batches, received_at)


class RevocableStore(DelegatingStore):
    """Tokens can be revoked: the store stops listing their hashes."""

    def __init__(self, inner: MetricStore) -> None:
        super().__init__(inner)
        self.revoked: set[str] = set()

    def token_hashes(self, dealer_id: str) -> list[str]:
        return [h for h in self.inner.token_hashes(dealer_id) if h not in self.revoked]


def new_stub(channel: grpc.aio.Channel) -> pb_grpc.IngestStub:
    return pb_grpc.IngestStub(channel)  # type: ignore[no-untyped-call]  # generated, untyped


def unique_dealer() -> str:
    return f"dealer-{uuid.uuid4().hex[:10]}"


def add_dealer(
    store: MetricStore, clock: FakeClock, dealer_id: str | None = None
) -> tuple[str, str]:
    """A new dealer and its token."""
    dealer_id = dealer_id or unique_dealer()
    token = new_token(dealer_id)
    store.create_dealer(dealer_id, f"Dealer {dealer_id}", hash_token(token), clock.now())
    return dealer_id, token


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


@dataclass
class Collector:
    server: CollectorServer
    store: MetricStore
    clock: FakeClock
    port: int
    channel: grpc.aio.Channel
    stub: pb_grpc.IngestStub
    dealer_id: str
    token: str
    agents: list[str] = field(default_factory=list)

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return bearer(self.token)

    def now_ms(self) -> int:
        return unix_ms(self.clock)

    def agent(self) -> str:
        agent_id = f"agent-{uuid.uuid4().hex[:10]}"
        self.agents.append(agent_id)
        return agent_id

    def batch(self, agent_id: str, seq: int, n_samples: int = 3) -> MetricBatch:
        return good_batch(self.dealer_id, agent_id, seq, self.now_ms(), n_samples)

    def open_stream(self, token: str | None = None) -> StreamClient:
        call = self.stub.Stream(metadata=bearer(token or self.token))
        return StreamClient(call)


class StreamClient:
    """One Ingest.Stream driven step by step, every wait bounded."""

    def __init__(self, call: Any) -> None:
        self.call = call

    async def send(self, batch: MetricBatch | pb.Batch) -> None:
        message = batch if isinstance(batch, pb.Batch) else encode(batch)
        await within(self.call.write(message))

    async def ack(self) -> pb.Ack:
        ack = await within(self.call.read())
        if ack is EOF:
            raise AssertionError(f"stream ended instead of acking: {await self.call.code()}")
        assert isinstance(ack, pb.Ack)
        return ack

    async def roundtrip(self, batch: MetricBatch | pb.Batch) -> pb.Ack:
        await self.send(batch)
        return await self.ack()

    async def finish(self) -> grpc.StatusCode:
        """Half-close and read to the end; the acks still owed must all be read first."""
        await within(self.call.done_writing())
        return await self.end_code()

    async def end_code(self) -> grpc.StatusCode:
        """How the server ended the stream (no ack may be left unread)."""
        try:
            leftover = await within(self.call.read())
        except grpc.aio.AioRpcError as ended:  # a read reports a non-OK end by raising
            return ended.code()
        assert leftover is EOF, f"unexpected ack {leftover}"
        code: grpc.StatusCode = await within(self.call.code())
        return code


@asynccontextmanager
async def running_collector(
    store: MetricStore,
    settings: CollectorSettings | None = None,
    clock: FakeClock | None = None,
) -> AsyncIterator[Collector]:
    clock = clock or FakeClock(datetime.now(UTC).replace(microsecond=0))
    dealer_id, token = await asyncio.to_thread(add_dealer, store, clock)
    server = CollectorServer(store, "127.0.0.1:0", settings, clock, writer_retry=FAST_RETRY)
    port = await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield Collector(server, store, clock, port, channel, new_stub(channel), dealer_id, token)
    finally:
        await channel.close(None)
        await server.stop(5.0)
