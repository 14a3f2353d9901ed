"""Load generator: many concurrent agent streams sending pre-built batches.

Runs as its own process (so the collector under test has the machine's other
core to itself as far as possible). Batches are built and serialized before
the clock starts; the timed loop only sends bytes and reads acks. A batch
answered RETRY is resent after the delay the collector asked for, so every
batch ends up stored (or rejected) and the totals can be checked against the
database.

Closed loop (default): every stream keeps ``--window`` batches unacked.
Open loop (``--rate-samples-s``): batches are due at a fixed rate whatever the
collector does; a batch's latency counts from when it was due, so time spent
waiting for a free window slot is included (no coordinated omission).

    python -m bench.loadgen --target 127.0.0.1:50051 --token TOKEN \
        --streams 100 --batch-samples 500 --duration-s 20 [--rate-samples-s N]

Prints one JSON object (:class:`Result`). Several load generators can run as
one (bench.ingest_matrix): ``--start-at`` makes their timed loops start at the
same wall-clock moment, and ``--latencies`` writes each one's raw measured ack
latencies so that percentiles can be taken over all of them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import grpc

from dealerpulse import tokens
from dealerpulse.v1 import ingest_pb2

STREAM_METHOD = "/dealerpulse.v1.Ingest/Stream"
SERIES_PER_NAME = 50
INTERVAL_MS = 10_000


@dataclass
class Result:
    streams: int
    channels: int
    batch_samples: int
    duration_s: float
    warmup_s: float
    # Over the measured window (after the warm-up, until the send deadline).
    batches_acked: int
    samples_per_s: float
    ack_p50_ms: float
    ack_p99_ms: float
    ack_max_ms: float
    # Over the whole run, drain included: what the database must hold.
    total_batches_stored: int
    total_samples_stored: int
    duplicates: int
    retries: int
    rejected: int
    unanswered: int
    offered_rate_samples_s: float | None
    loadgen_cpu_percent: float
    agent_ids: list[str] = field(default_factory=list)


@dataclass
class Tally:
    """What the streams observed, shared by all of them (one event loop: no locks)."""

    measure_from: float
    measure_to: float
    latencies_ms: list[float] = field(default_factory=list)
    measured_samples: int = 0
    stored_batches: int = 0
    stored_samples: int = 0
    duplicates: int = 0
    retries: int = 0
    rejected: int = 0
    unanswered: int = 0

    def stored(self, due: float, acked: float, samples: int) -> None:
        self.stored_batches += 1
        self.stored_samples += samples
        if self.measure_from <= acked <= self.measure_to:
            self.latencies_ms.append((acked - due) * 1000)
            self.measured_samples += samples


def sample_rows(
    seq: int, batch_samples: int, start_ms: int, series_per_agent: int | None = None
) -> Iterator[tuple[str, str, float, int]]:
    """(name, instance label, value, time_ms) of the samples of batch ``seq``.

    ``series_per_agent`` None: one point per series (``batch_samples`` series).
    Fewer series: each gets several points per batch, spread over the interval.
    """
    series = series_per_agent or batch_samples
    step_ms = INTERVAL_MS // -(-batch_samples // series)
    at = start_ms + seq * INTERVAL_MS
    for i in range(batch_samples):
        k = i % series
        yield (
            f"bench.metric_{k % SERIES_PER_NAME}",
            str(k // SERIES_PER_NAME),
            float(i) + seq / 7,
            at + (i // series) * step_ms,
        )


def build_sample_blocks(
    count: int,
    batch_samples: int,
    start_ms: int,
    series_per_agent: int | None = None,
    *,
    columnar: bool = False,
) -> list[bytes]:
    """The encoded ``samples`` (or ``sample_columns``) field of each seq's batch,
    shared by every stream.

    Realistic host-metric shape: many series, one point each per interval.
    Samples carry no agent identity, so one block per seq serves all streams;
    a serialized Batch header plus the block parses as the whole batch.
    """
    blocks = []
    for seq in range(1, count + 1):
        rows = sample_rows(seq, batch_samples, start_ms, series_per_agent)
        holder = _columns_block(rows) if columnar else _rows_block(rows)
        blocks.append(holder.SerializeToString())
    return blocks


def _rows_block(rows: Iterator[tuple[str, str, float, int]]) -> ingest_pb2.Batch:
    holder = ingest_pb2.Batch()
    for name, instance, value, time_ms in rows:
        sample = holder.samples.add(name=name, value=value, unit="count", time_unix_ms=time_ms)
        sample.labels["instance"] = instance
    return holder


def _columns_block(rows: Iterator[tuple[str, str, float, int]]) -> ingest_pb2.Batch:
    """What the agent's columnar encoder sends for the same samples."""
    holder = ingest_pb2.Batch()
    columns = holder.sample_columns
    names: dict[str, int] = {}
    instances: dict[str, int] = {}
    for name, instance, value, time_ms in rows:
        columns.name_index.append(names.setdefault(name, len(names)))
        columns.unit_index.append(0)
        columns.labels_index.append(instances.setdefault(instance, len(instances)))
        columns.values.append(value)
        columns.time_unix_ms.append(time_ms)
    columns.names.extend(names)
    columns.units.append("count")
    for instance in instances:
        columns.label_sets.add().labels["instance"] = instance
    return holder


def build_batches(dealer_id: str, agent_id: str, blocks: list[bytes], start_ms: int) -> list[bytes]:
    payloads = []
    for seq, block in enumerate(blocks, start=1):
        header = ingest_pb2.Batch(
            agent_id=agent_id,
            dealer_id=dealer_id,
            seq=seq,
            boot_id="bench",
            hostname=agent_id,
            agent_version="bench",
            created_unix_ms=start_ms + seq * INTERVAL_MS,
        )
        payloads.append(header.SerializeToString() + block)
    return payloads


@dataclass
class StreamPlan:
    token: str
    payloads: list[bytes]
    batch_samples: int
    window: int
    deadline: float
    # Open loop: due times of batches, shared by all streams; None: closed loop.
    due_times: asyncio.Queue[float] | None
    # 2 when batch 1 was stored by prime() before the clock started.
    first_seq: int = 1


def open_stream(
    channel: grpc.aio.Channel, token: str
) -> grpc.aio.StreamStreamCall[bytes, ingest_pb2.Ack]:
    """An Ingest stream that sends pre-serialized batches and reads Acks."""
    method = channel.stream_stream(
        STREAM_METHOD,
        request_serializer=lambda b: b,
        response_deserializer=ingest_pb2.Ack.FromString,
    )
    return method(metadata=(("authorization", f"Bearer {token}"),))  # type: ignore[call-arg]


async def run_stream(channel: grpc.aio.Channel, plan: StreamPlan, tally: Tally) -> None:
    call = open_stream(channel, plan.token)
    loop = asyncio.get_running_loop()
    due: dict[int, float] = {}  # unacked seq -> when it was due
    slots = asyncio.Semaphore(plan.window)
    to_send: asyncio.Queue[int] = asyncio.Queue()
    produced = asyncio.Event()

    async def producer() -> None:
        for seq in range(plan.first_seq, len(plan.payloads) + 1):
            if plan.due_times is not None:
                # Due first, then a slot: waiting for the window counts as latency.
                due_at = await plan.due_times.get()
                await slots.acquire()
            else:
                await slots.acquire()
                due_at = time.monotonic()
            if due_at >= plan.deadline:
                break
            due[seq] = due_at
            to_send.put_nowait(seq)
        produced.set()
        if not due:
            await call.done_writing()

    async def writer() -> None:
        # One writer per call: gRPC allows one outstanding write at a time.
        while True:
            seq = await to_send.get()
            await call.write(plan.payloads[seq - 1])

    tasks = [asyncio.create_task(producer()), asyncio.create_task(writer())]
    try:
        async for ack in call:
            now = time.monotonic()
            if ack.status == ingest_pb2.Ack.RETRY:
                tally.retries += 1
                # Keep the slot: the resend takes it.
                loop.call_later(ack.retry_after_ms / 1000, to_send.put_nowait, ack.seq)
                continue
            due_at = due.pop(ack.seq)
            slots.release()
            if ack.status == ingest_pb2.Ack.STORED:
                tally.stored(due_at, now, ack.samples_stored)
            elif ack.status == ingest_pb2.Ack.DUPLICATE:
                tally.duplicates += 1
            else:
                tally.rejected += 1
            if produced.is_set() and not due:
                break
    finally:
        tally.unanswered += len(due)
        for task in tasks:
            task.cancel()
        call.cancel()


async def prime(channel: grpc.aio.Channel, token: str, payload: bytes, tally: Tally) -> None:
    """Store an agent's first batch before the clock starts: its series then exist.

    A running fleet's agents are known to the collector; a new agent's first
    batch also creates its series (500 here), which is start-up, not load.
    """
    call = open_stream(channel, token)
    try:
        await call.write(payload)
        async for ack in call:
            if ack.status == ingest_pb2.Ack.RETRY:
                tally.retries += 1
                await asyncio.sleep(ack.retry_after_ms / 1000)  # the delay the collector asked for
                await call.write(payload)
                continue
            if ack.status != ingest_pb2.Ack.STORED:
                raise RuntimeError(f"a priming batch was not stored: {ack}")
            tally.stored_batches += 1
            tally.stored_samples += ack.samples_stored
            return
        raise RuntimeError("the collector ended a priming stream without an ack")
    finally:
        call.cancel()


async def pace(
    due_times: asyncio.Queue[float], batches_per_s: float, deadline: float, streams: int
) -> None:
    """Issue due times at a fixed rate until the deadline, then one past it for every stream."""
    interval = 1.0 / batches_per_s
    next_due = time.monotonic()
    while next_due < deadline:
        now = time.monotonic()
        while next_due <= now and next_due < deadline:
            due_times.put_nowait(next_due)
            next_due += interval
        await asyncio.sleep(max(0.0, min(next_due, deadline) - time.monotonic()))
    for _ in range(streams):  # ends every producer still waiting
        due_times.put_nowait(deadline)


def _quantile(values: list[float], q: int) -> float:
    if len(values) < 2:
        return values[0] if values else 0.0
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


async def main_async(args: argparse.Namespace) -> Result:
    dealer_id = tokens.parse_token(args.token).dealer_id
    per_stream = args.batches_per_stream
    start_ms = int(time.time() * 1000) - (per_stream + 1) * INTERVAL_MS
    run = uuid.uuid4().hex[:8]
    blocks = build_sample_blocks(
        per_stream,
        args.batch_samples,
        start_ms,
        args.series_per_agent,
        columnar=args.wire == "columns",
    )
    agent_ids = [f"bench-{run}-{i}" for i in range(args.streams)]
    payloads = [build_batches(dealer_id, agent, blocks, start_ms) for agent in agent_ids]
    channels = [grpc.aio.insecure_channel(args.target) for _ in range(args.channels)]
    for channel in channels:
        await asyncio.wait_for(channel.channel_ready(), timeout=30)
    tally = Tally(measure_from=0.0, measure_to=0.0)
    if args.prime:
        await asyncio.gather(
            *(
                prime(channels[i % len(channels)], args.token, payloads[i][0], tally)
                for i in range(args.streams)
            )
        )
    if args.start_at is not None:
        # Wall clock, so that separate load-generator processes start together.
        await asyncio.sleep(max(0.0, args.start_at - time.time()))
    cpu_started = time.process_time()
    started = time.monotonic()
    deadline = started + args.duration_s
    tally.measure_from, tally.measure_to = started + args.warmup_s, deadline
    due_times: asyncio.Queue[float] | None = None
    pacer: asyncio.Task[None] | None = None
    if args.rate_samples_s:
        due_times = asyncio.Queue()
        rate = args.rate_samples_s / args.batch_samples
        pacer = asyncio.create_task(pace(due_times, rate, deadline, args.streams))
    tasks = [
        asyncio.create_task(
            run_stream(
                channels[i % len(channels)],
                StreamPlan(
                    args.token,
                    payloads[i],
                    args.batch_samples,
                    args.window,
                    deadline,
                    due_times,
                    first_seq=2 if args.prime else 1,
                ),
                tally,
            )
        )
        for i in range(args.streams)
    ]
    _, late = await asyncio.wait(tasks, timeout=args.duration_s + args.drain_timeout_s)
    for task in late:
        task.cancel()
    await asyncio.gather(*late, return_exceptions=True)
    elapsed = time.monotonic() - started
    cpu_s = time.process_time() - cpu_started
    if pacer is not None:
        pacer.cancel()
    for channel in channels:
        await channel.close(grace=None)
    if args.latencies is not None:
        args.latencies.write_text(json.dumps([round(ms, 3) for ms in tally.latencies_ms]))
    measured_s = max(1e-9, args.duration_s - args.warmup_s)
    return Result(
        streams=args.streams,
        channels=args.channels,
        batch_samples=args.batch_samples,
        duration_s=round(elapsed, 2),
        warmup_s=args.warmup_s,
        batches_acked=len(tally.latencies_ms),
        samples_per_s=round(tally.measured_samples / measured_s, 1),
        ack_p50_ms=round(_quantile(tally.latencies_ms, 50), 2),
        ack_p99_ms=round(_quantile(tally.latencies_ms, 99), 2),
        ack_max_ms=round(max(tally.latencies_ms, default=0.0), 2),
        total_batches_stored=tally.stored_batches,
        total_samples_stored=tally.stored_samples,
        duplicates=tally.duplicates,
        retries=tally.retries,
        rejected=tally.rejected,
        unanswered=tally.unanswered,
        offered_rate_samples_s=args.rate_samples_s,
        loadgen_cpu_percent=round(100 * cpu_s / elapsed, 1),
        agent_ids=agent_ids,
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.loadgen",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--target", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--streams", type=int, default=100)
    parser.add_argument("--channels", type=int, default=8)
    parser.add_argument("--batch-samples", type=int, default=500)
    parser.add_argument("--batches-per-stream", type=int, default=80)
    parser.add_argument(
        "--series-per-agent", type=int, default=None, help="default: one per batch sample"
    )
    parser.add_argument(
        "--wire",
        choices=("rows", "columns"),
        default="columns",
        help="samples as repeated Sample (rows) or as Batch.sample_columns",
    )
    parser.add_argument("--window", type=int, default=4, help="unacked batches per stream")
    parser.add_argument("--duration-s", type=float, default=20.0)
    parser.add_argument(
        "--warmup-s", type=float, default=2.0, help="acks before this are not measured"
    )
    parser.add_argument(
        "--prime",
        action="store_true",
        help="store each agent's first batch before the clock starts (a known fleet)",
    )
    parser.add_argument("--drain-timeout-s", type=float, default=30.0)
    parser.add_argument("--rate-samples-s", type=float, default=None, help="open-loop rate")
    parser.add_argument(
        "--start-at", type=float, default=None, help="unix time to start sending at"
    )
    parser.add_argument(
        "--latencies", type=Path, default=None, help="write the measured ack latencies (JSON)"
    )
    args = parser.parse_args(argv)
    if not 0 <= args.warmup_s < args.duration_s:
        parser.error("--warmup-s must be at least 0 and below --duration-s")
    if args.series_per_agent is not None and not 1 <= args.series_per_agent <= args.batch_samples:
        parser.error("--series-per-agent must be between 1 and --batch-samples")
    return args


def main(argv: list[str] | None = None) -> int:
    result = asyncio.run(main_async(parse_args(argv)))
    sys.stdout.write(json.dumps(asdict(result)) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
