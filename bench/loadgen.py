"""Load generator: many concurrent agent streams sending pre-built batches.

Runs as its own process (so the collector under test has the machine's other
core to itself as far as possible). Batches are built and serialized before
the clock starts; the timed loop only sends bytes and reads acks.

    python -m bench.loadgen --target 127.0.0.1:50051 --token TOKEN \
        --streams 100 --batch-samples 500 --duration-s 20 [--rate-samples-s N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
import uuid
from dataclasses import asdict, dataclass

import grpc

from dealerpulse import tokens
from dealerpulse.v1 import ingest_pb2

STREAM_METHOD = "/dealerpulse.v1.Ingest/Stream"


@dataclass
class Result:
    streams: int
    batch_samples: int
    duration_s: float
    batches_acked: int
    samples_acked: int
    samples_per_s: float
    ack_p50_ms: float
    ack_p99_ms: float
    retries: int
    rejected: int
    offered_rate_samples_s: float | None


def build_batches(
    dealer_id: str, agent_id: str, count: int, batch_samples: int, start_ms: int
) -> list[bytes]:
    """Realistic host-metric shaped batches: many series, one point each per interval."""
    payloads = []
    for seq in range(1, count + 1):
        ts = start_ms + seq * 10_000
        batch = ingest_pb2.Batch(
            agent_id=agent_id,
            dealer_id=dealer_id,
            seq=seq,
            boot_id="bench",
            hostname=agent_id,
            agent_version="bench",
            created_unix_ms=ts,
        )
        for i in range(batch_samples):
            sample = batch.samples.add(
                name=f"bench.metric_{i % 50}",
                value=float(i) + seq / 7,
                unit="count",
                time_unix_ms=ts,
            )
            sample.labels["instance"] = str(i // 50)
        payloads.append(batch.SerializeToString())
    return payloads


async def run_stream(
    channel: grpc.aio.Channel,
    token: str,
    payloads: list[bytes],
    window: int,
    deadline: float,
    pacer: asyncio.Semaphore | None,
    latencies: list[float],
    counters: dict[str, int],
) -> None:
    method = channel.stream_stream(
        STREAM_METHOD,
        request_serializer=lambda b: b,
        response_deserializer=ingest_pb2.Ack.FromString,
    )
    # No request iterator: batches are written with call.write() as acks free the window.
    call = method(metadata=(("authorization", f"Bearer {token}"),))  # type: ignore[call-arg]
    sent_at: dict[int, float] = {}
    slots = asyncio.Semaphore(window)
    done = asyncio.Event()

    async def sender() -> None:
        for seq, payload in enumerate(payloads, start=1):
            if time.monotonic() >= deadline:
                break
            await slots.acquire()
            if pacer is not None:
                await pacer.acquire()
            sent_at[seq] = time.monotonic()
            await call.write(payload)
        done.set()

    send_task = asyncio.create_task(sender())
    try:
        async for ack in call:
            now = time.monotonic()
            slots.release()
            if ack.status == ingest_pb2.Ack.RETRY:
                counters["retries"] += 1
                continue
            if ack.status == ingest_pb2.Ack.REJECTED:
                counters["rejected"] += 1
                continue
            latencies.append((now - sent_at.pop(ack.seq)) * 1000)
            counters["batches"] += 1
            counters["samples"] += ack.samples_stored
            if done.is_set() and not sent_at:
                break
    finally:
        send_task.cancel()
        call.cancel()


async def pace(pacer: asyncio.Semaphore, batches_per_s: float, deadline: float) -> None:
    interval = 1.0 / batches_per_s
    next_at = time.monotonic()
    while time.monotonic() < deadline:
        pacer.release()
        next_at += interval
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))


async def main_async(args: argparse.Namespace) -> Result:
    dealer_id = tokens.parse_token(args.token).dealer_id
    per_stream = args.batches_per_stream
    start_ms = int(time.time() * 1000) - per_stream * 10_000
    run = uuid.uuid4().hex[:8]
    payloads = [
        build_batches(dealer_id, f"bench-{run}-{i}", per_stream, args.batch_samples, start_ms)
        for i in range(args.streams)
    ]
    channels = [grpc.aio.insecure_channel(args.target) for _ in range(args.channels)]
    latencies: list[float] = []
    counters = {"batches": 0, "samples": 0, "retries": 0, "rejected": 0}
    pacer = asyncio.Semaphore(0) if args.rate_samples_s else None
    started = time.monotonic()
    deadline = started + args.duration_s
    tasks = [
        asyncio.create_task(
            run_stream(
                channels[i % len(channels)],
                args.token,
                payloads[i],
                args.window,
                deadline,
                pacer,
                latencies,
                counters,
            )
        )
        for i in range(args.streams)
    ]
    pacer_task = None
    if pacer is not None:
        pacer_task = asyncio.create_task(
            pace(pacer, args.rate_samples_s / args.batch_samples, deadline)
        )
    await asyncio.wait(tasks, timeout=args.duration_s + 30)
    elapsed = time.monotonic() - started
    if pacer_task:
        pacer_task.cancel()
    for channel in channels:
        await channel.close(grace=None)
    quantiles = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [0.0] * 99
    return Result(
        streams=args.streams,
        batch_samples=args.batch_samples,
        duration_s=round(elapsed, 2),
        batches_acked=counters["batches"],
        samples_acked=counters["samples"],
        samples_per_s=round(counters["samples"] / elapsed, 1),
        ack_p50_ms=round(quantiles[49], 2),
        ack_p99_ms=round(quantiles[98], 2),
        retries=counters["retries"],
        rejected=counters["rejected"],
        offered_rate_samples_s=args.rate_samples_s,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--target", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--streams", type=int, default=100)
    parser.add_argument("--channels", type=int, default=4)
    parser.add_argument("--batch-samples", type=int, default=500)
    parser.add_argument("--batches-per-stream", type=int, default=40)
    parser.add_argument("--window", type=int, default=4, help="unacked batches per stream")
    parser.add_argument("--duration-s", type=float, default=20.0)
    parser.add_argument("--rate-samples-s", type=float, default=None, help="open-loop rate")
    result = asyncio.run(main_async(parser.parse_args()))
    sys.stdout.write(json.dumps(asdict(result)) + "\n")


if __name__ == "__main__":
    main()
