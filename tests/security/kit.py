"""The security tests' kit: a real collector on 127.0.0.1:0, dealers with tokens of every
role, the agent's own connection code as the client, and bounded waits."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import grpc

from agent.codec import Ack, Hello, encode_batch
from agent.connection import AckStream, Endpoint, open_channel, open_stream, say_hello
from agent.settings import TlsFiles
from collector.server import CollectorServer
from collector.settings import CollectorSettings
from collector.store import SQLAlchemyMetricStore
from dealerpulse.clock import FakeClock, unix_ms
from dealerpulse.model import MetricBatch, Sample, labels_of
from dealerpulse.tokens import hash_token, new_admin_token, new_token

T = TypeVar("T")
WAIT_S = 20.0
# The end-of-stream marker of grpc.aio reads; the type stubs do not list it.
EOF: Any = grpc.aio.EOF  # type: ignore[attr-defined]
START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def run(coro: Coroutine[Any, Any, T], timeout_s: float = 60.0) -> T:
    """Run a scenario with an overall deadline."""
    return asyncio.run(asyncio.wait_for(coro, timeout_s))


async def within(awaitable: Any, timeout_s: float = WAIT_S) -> Any:
    return await asyncio.wait_for(awaitable, timeout_s)


async def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.01)


@dataclass(frozen=True)
class Tokens:
    """One dealer's tokens: its agents' (dealer role) and a read-only viewer's."""

    dealer_id: str
    dealer: str
    viewer: str


def add_dealer(store: SQLAlchemyMetricStore, clock: FakeClock, dealer_id: str) -> Tokens:
    dealer, viewer = new_token(dealer_id), new_token(dealer_id)
    store.create_dealer(dealer_id, dealer_id.title(), hash_token(dealer), clock.now())
    store.add_token(dealer_id, hash_token(viewer), clock.now(), role="viewer")
    return Tokens(dealer_id, dealer, viewer)


def add_admin(store: SQLAlchemyMetricStore, clock: FakeClock) -> str:
    token = new_admin_token()
    store.add_token(None, hash_token(token), clock.now(), role="admin")
    return token


def sample(now_ms: int, name: str = "cpu.percent", value: float = 12.5, **labels: str) -> Sample:
    return Sample(name, value, "percent", now_ms, labels_of(**labels))


def batch(
    dealer_id: str, agent_id: str, seq: int, now_ms: int, samples: tuple[Sample, ...] = ()
) -> MetricBatch:
    return MetricBatch(
        agent_id=agent_id,
        dealer_id=dealer_id,
        seq=seq,
        boot_id="boot-1",
        hostname="dms-01",
        agent_version="0.1.0",
        created_ms=now_ms,
        samples=samples or tuple(sample(now_ms, core=str(i)) for i in range(3)),
    )


def new_agent_id() -> str:
    return f"agent-{uuid.uuid4().hex[:10]}"


@dataclass
class Agent:
    """The agent's connection code (agent.connection) driven step by step."""

    channel: grpc.aio.Channel
    token: str
    dealer_id: str
    clock: FakeClock
    agent_id: str

    async def hello(self) -> Any:
        hello = Hello(self.agent_id, "dms-01", "0.1.0", "boot-1")
        return await say_hello(self.channel, self.token, hello, timeout_s=WAIT_S)

    def stream(self) -> AgentStream:
        return AgentStream(open_stream(self.channel, self.token))

    def batch(self, seq: int, samples: tuple[Sample, ...] = ()) -> MetricBatch:
        return batch(self.dealer_id, self.agent_id, seq, unix_ms(self.clock), samples)


class AgentStream:
    def __init__(self, call: AckStream) -> None:
        self.call = call

    async def roundtrip(self, sent: MetricBatch, *, columnar: bool = False) -> Ack:
        await within(self.call.write(encode_batch(sent, columnar=columnar)))
        return await self.ack()

    async def ack(self) -> Ack:
        ack = await within(self.call.read())
        if ack is EOF:
            raise AssertionError(f"stream ended instead of acking: {await self.call.code()}")
        assert isinstance(ack, Ack)
        return ack

    async def end(self, timeout_s: float = WAIT_S) -> tuple[grpc.StatusCode, str]:
        """Read until the server ends the stream; its status code and details."""
        try:
            while (await within(self.call.read(), timeout_s)) is not EOF:
                pass
        except grpc.aio.AioRpcError as ended:
            return ended.code(), ended.details() or ""
        return await within(self.call.code()), await within(self.call.details())


@dataclass
class Collector:
    server: CollectorServer
    store: SQLAlchemyMetricStore
    clock: FakeClock
    port: int

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @asynccontextmanager
    async def agent(
        self, token: str, dealer_id: str, tls: TlsFiles | None = None
    ) -> AsyncIterator[Agent]:
        channel = open_channel(Endpoint(self.address, token, tls))
        try:
            yield Agent(channel, token, dealer_id, self.clock, new_agent_id())
        finally:
            await channel.close(None)


@asynccontextmanager
async def running_collector(
    store: SQLAlchemyMetricStore,
    settings: CollectorSettings | None = None,
    clock: FakeClock | None = None,
) -> AsyncIterator[Collector]:
    """A collector without scheduled alert jobs (the tests drive what they need)."""
    clock = clock or FakeClock(START)
    settings = settings or CollectorSettings(listen="127.0.0.1:0", run_jobs=False)
    server = CollectorServer(store, "127.0.0.1:0", settings, clock)
    port = await server.start()
    try:
        yield Collector(server, store, clock, port)
    finally:
        await server.stop(5.0)
