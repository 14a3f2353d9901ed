"""Helpers for the agent's tests: fixture host inputs, a scripted collector, waits.

The scripted collector is a real grpc.aio server on 127.0.0.1:0 speaking the
Ingest contract; each test scripts how it answers (ack, reject, RETRY, drop
the stream, refuse the token, hold acks back).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc
import grpc.aio

from agent.sources.inputs import DiskIo, DiskUsage, Memory, NetIo, NicStats, Partition, Swap
from dealerpulse.model import Sample
from dealerpulse.v1 import ingest_pb2 as pb

TOKEN = "dp1.acme-motors.s3cr3t-value-that-must-not-leak"
DEALER = "acme-motors"
T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T], timeout_s: float = 20.0) -> T:
    """Run an async test body on a fresh loop, bounded in time."""

    async def bounded() -> T:
        return await asyncio.wait_for(coro, timeout_s)

    return asyncio.run(bounded())


class Changes:
    """A pulse that everything observable sets; waits re-check a predicate on it."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def pulse(self, *_: object) -> None:
        self._event.set()

    async def wait_until(
        self, predicate: Callable[[], bool], what: str, timeout_s: float = 5.0
    ) -> None:
        try:
            async with asyncio.timeout(timeout_s):
                while not predicate():
                    self._event.clear()
                    await self._event.wait()
        except TimeoutError:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}") from None


def samples(count: int, time_ms: int = 1_700_000_000_000, name: str = "test.value") -> list[Sample]:
    return [Sample(name, float(i), "count", time_ms, (("i", str(i)),)) for i in range(count)]


# ---- fixture host inputs


@dataclass
class FakeHost:
    """HostInputs from plain attributes; tests change them between collects."""

    cpu: float = 12.5
    cores: Sequence[float] = (10.0, 15.0)
    load: tuple[float, float, float] = (0.5, 0.25, 0.125)
    memory: Memory = field(default_factory=lambda: Memory(40.0, 4_000, 6_000, 10_000))
    swap: Swap = field(default_factory=lambda: Swap(10.0, 100, 900, 1_000))
    partitions: Sequence[Partition] = (Partition("/dev/sda1", "/", "ext4"),)
    usage: Mapping[str, DiskUsage] = field(
        default_factory=lambda: {"/": DiskUsage(1_000, 250, 750, 25.0)}
    )
    disks: Mapping[str, DiskIo] = field(default_factory=dict)
    disk_total: DiskIo | None = None
    nics: Mapping[str, NetIo] = field(default_factory=dict)
    nic_stats: Mapping[str, NicStats] = field(default_factory=dict)
    booted: float = 1_699_999_000.0
    pid_list: Sequence[int] = (1, 2, 3)
    broken: set[str] = field(default_factory=set)

    def _check(self, what: str) -> None:
        if what in self.broken:
            raise PermissionError(f"{what} denied")

    def cpu_percent(self) -> float:
        self._check("cpu")
        return self.cpu

    def cpu_percent_per_core(self) -> Sequence[float]:
        return self.cores

    def load_average(self) -> tuple[float, float, float]:
        return self.load

    def virtual_memory(self) -> Memory:
        self._check("memory")
        return self.memory

    def swap_memory(self) -> Swap:
        return self.swap

    def disk_partitions(self) -> Sequence[Partition]:
        return self.partitions

    def disk_usage(self, mountpoint: str) -> DiskUsage:
        if mountpoint not in self.usage:
            raise FileNotFoundError(mountpoint)
        return self.usage[mountpoint]

    def disk_io_per_disk(self) -> Mapping[str, DiskIo]:
        return self.disks

    def disk_io_total(self) -> DiskIo | None:
        return self.disk_total

    def net_io_per_nic(self) -> Mapping[str, NetIo]:
        return self.nics

    def net_if_stats(self) -> Mapping[str, NicStats]:
        return self.nic_stats

    def boot_time(self) -> float:
        return self.booted

    def pids(self) -> Sequence[int]:
        return self.pid_list


# ---- the scripted collector


@dataclass
class StreamFailure:
    """Abort a stream with ``code`` after reading ``after`` batches (0: at once)."""

    code: grpc.StatusCode
    after: int = 0
    retry_after_ms: int | None = None


@dataclass
class Received:
    seq: int
    payload: bytes
    stream: int
    at: float


class ScriptedCollector:
    """An Ingest servicer whose answers a test scripts."""

    def __init__(self, changes: Changes, token: str = TOKEN) -> None:
        self.changes = changes
        self.token = token
        self.dealer_id = DEALER
        # What the Hello reply says; False plays an older, rows-only collector.
        self.accepts_sample_columns = False
        self.refuse_code: grpc.StatusCode | None = None
        self.reject: set[int] = set()
        self.duplicate: set[int] = set()
        # Answered as the collector answers a seq stored before with other content.
        self.conflict: set[int] = set()
        # seq -> retry_after_ms, answered RETRY once per entry.
        self.retry_once: dict[int, int] = {}
        self.stream_failures: list[StreamFailure] = []
        # Break whichever stream reads this seq, once.
        self.fail_on_seq: dict[int, StreamFailure] = {}
        self.ack_gate = asyncio.Event()
        self.ack_gate.set()
        self.hello_gate = asyncio.Event()
        self.hello_gate.set()
        self.server: grpc.aio.Server | None = None
        self.hellos: list[tuple[pb.HelloRequest, dict[str, str]]] = []
        self.stream_starts: list[float] = []
        self.received: list[Received] = []
        self.acked: list[tuple[int, int]] = []  # (seq, status)
        self.max_unacked = 0

    # ---- what tests look at

    def seqs(self) -> list[int]:
        return [r.seq for r in self.received]

    def decoded(self, index: int) -> pb.Batch:
        return pb.Batch.FromString(self.received[index].payload)

    def stored(self) -> set[int]:
        return {seq for seq, status in self.acked if status == pb.Ack.STORED}

    # ---- handlers

    async def hello(
        self, request: pb.HelloRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.HelloResponse:
        metadata = {k: str(v) for k, v in context.invocation_metadata() or ()}
        self.hellos.append((request, metadata))
        self.changes.pulse()
        await self.hello_gate.wait()
        await self._authorize(metadata, context)
        return pb.HelloResponse(
            dealer_id=self.dealer_id,
            dealer_name="Acme Motors",
            last_committed_seq=max(self.stored(), default=0),
            server_time_unix_ms=int(time.time() * 1000),
            accepts_sample_columns=self.accepts_sample_columns,
        )

    async def stream(
        self, requests: AsyncIterator[pb.Batch], context: grpc.aio.ServicerContext[Any, Any]
    ) -> None:
        number = len(self.stream_starts)
        self.stream_starts.append(asyncio.get_running_loop().time())
        self.changes.pulse()
        metadata = {k: str(v) for k, v in context.invocation_metadata() or ()}
        await self._authorize(metadata, context)
        failure = self.stream_failures.pop(0) if self.stream_failures else None
        if failure is not None and failure.after == 0:
            await self._fail(failure, context)
        outbox: asyncio.Queue[pb.Ack | None] = asyncio.Queue()
        broken: asyncio.Future[StreamFailure] = asyncio.get_running_loop().create_future()
        reader = asyncio.create_task(self._read(requests, number, failure, outbox, broken))
        try:
            await _first_of(self._write_acks(outbox, context), asyncio.shield(broken))
            if broken.done():
                await self._fail(broken.result(), context)
        finally:
            reader.cancel()

    async def _write_acks(
        self, outbox: asyncio.Queue[pb.Ack | None], context: grpc.aio.ServicerContext[Any, Any]
    ) -> None:
        while (ack := await outbox.get()) is not None:
            await self.ack_gate.wait()
            await context.write(ack)
            self.acked.append((ack.seq, ack.status))
            self.changes.pulse()

    async def _read(
        self,
        requests: AsyncIterator[pb.Batch],
        number: int,
        failure: StreamFailure | None,
        outbox: asyncio.Queue[pb.Ack | None],
        broken: asyncio.Future[StreamFailure],
    ) -> None:
        count = 0
        async for batch in requests:
            now = asyncio.get_running_loop().time()
            payload = batch.SerializeToString(deterministic=True)
            self.received.append(Received(batch.seq, payload, number, now))
            self.max_unacked = max(self.max_unacked, len(self.received) - len(self.acked))
            self.changes.pulse()
            count += 1
            if batch.seq in self.fail_on_seq:
                broken.set_result(self.fail_on_seq.pop(batch.seq))
                return
            if failure is not None and count >= failure.after:
                broken.set_result(failure)
                return
            await outbox.put(self._answer(batch))
        await outbox.put(None)

    def _answer(self, batch: pb.Batch) -> pb.Ack:
        seq = batch.seq
        if seq in self.retry_once:
            return pb.Ack(seq=seq, status=pb.Ack.RETRY, retry_after_ms=self.retry_once.pop(seq))
        if seq in self.reject:
            return pb.Ack(
                seq=seq, status=pb.Ack.REJECTED, code=3, field="samples[0].value", message="NaN"
            )
        if seq in self.conflict:
            return pb.Ack(seq=seq, status=pb.Ack.REJECTED, code=3, field="seq", message="conflict")
        if seq in self.stored() or seq in self.duplicate:
            return pb.Ack(seq=seq, status=pb.Ack.DUPLICATE)
        in_columns = len(batch.sample_columns.values)
        return pb.Ack(seq=seq, status=pb.Ack.STORED, samples_stored=len(batch.samples) + in_columns)

    async def _authorize(
        self, metadata: dict[str, str], context: grpc.aio.ServicerContext[Any, Any]
    ) -> None:
        if self.refuse_code is not None:
            await context.abort(self.refuse_code, "token not accepted")
        if metadata.get("authorization") != f"Bearer {self.token}":
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "bad token")

    async def _fail(
        self, failure: StreamFailure, context: grpc.aio.ServicerContext[Any, Any]
    ) -> None:
        if failure.retry_after_ms is not None:
            context.set_trailing_metadata((("retry-after-ms", str(failure.retry_after_ms)),))
        await context.abort(failure.code, f"scripted {failure.code.name}")


async def _first_of(*waits: Awaitable[Any]) -> None:
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()


@asynccontextmanager
async def serving(collector: ScriptedCollector) -> AsyncIterator[str]:
    """Serve ``collector`` on 127.0.0.1:<free port>; yields the address."""
    handler = grpc.method_handlers_generic_handler(
        "dealerpulse.v1.Ingest",
        {
            "Hello": grpc.unary_unary_rpc_method_handler(
                collector.hello,
                request_deserializer=pb.HelloRequest.FromString,
                response_serializer=pb.HelloResponse.SerializeToString,
            ),
            "Stream": grpc.stream_stream_rpc_method_handler(
                collector.stream,
                request_deserializer=pb.Batch.FromString,
                response_serializer=pb.Ack.SerializeToString,
            ),
        },
    )
    server = grpc.aio.server(handlers=[handler])
    port = server.add_insecure_port("127.0.0.1:0")
    collector.server = server
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(grace=None)


async def settle(aw: Awaitable[T], timeout_s: float = 5.0) -> T:
    return await asyncio.wait_for(aw, timeout_s)
