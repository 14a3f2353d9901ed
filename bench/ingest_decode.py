"""Decode micro-benchmark: CPU microseconds per sample, rows vs columns.

Times what the collector does with a batch before the writer sees it: parse
the bytes (upb), decode to the model (:func:`collector.ingest.codec.decode_batch`,
digest included), validate (with the per-stream checked-series cache warm).
The batches are the load generator's (bench.loadgen): 500 series, one point
each. CPU time (``time.process_time``), best of ``--repeat``: robust to a
busy machine, unlike a rate.

    python -m bench.ingest_decode [--batches 40] [--repeat 7]
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

from bench.loadgen import INTERVAL_MS, build_batches, build_sample_blocks
from collector.ingest import codec
from collector.ingest.validate import Caller, CheckedSeries, Limits, validate_batch
from dealerpulse.v1 import ingest_pb2 as pb

BATCH_SAMPLES = 500


def best_cpu_s(work: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.process_time()
        work()
        best = min(best, time.process_time() - started)
    return best


def measure(columnar: bool, batches: int, repeat: int) -> dict[str, float]:
    now_ms = int(time.time() * 1000)
    start_ms = now_ms - (batches + 1) * INTERVAL_MS
    blocks = build_sample_blocks(batches, BATCH_SAMPLES, start_ms, columnar=columnar)
    payloads = build_batches("bench-motors", "bench-agent", blocks, start_ms)
    messages = [pb.Batch.FromString(payload) for payload in payloads]
    decoded = [codec.decode_batch(message) for message in messages]
    checked = CheckedSeries()
    limits = Limits()

    def validate() -> None:
        for item in decoded:
            caller = Caller("bench-motors", True, item.encoded_bytes, now_ms)
            if validate_batch(item.batch, caller, limits, checked, item.row_samples):
                raise AssertionError("the benchmark's batches must be valid")

    samples = batches * BATCH_SAMPLES
    per_sample_us = 1e6 / samples
    return {
        "bytes_per_sample": round(sum(map(len, payloads)) / samples, 1),
        "parse_us": best_cpu_s(lambda: [pb.Batch.FromString(p) for p in payloads], repeat)
        * per_sample_us,
        "decode_us": best_cpu_s(lambda: [codec.decode_batch(m) for m in messages], repeat)
        * per_sample_us,
        "validate_us": best_cpu_s(validate, repeat) * per_sample_us,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ingest_decode", description=__doc__)
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args(argv)
    print(f"{'wire':<8} {'bytes/s.':>8} {'parse':>7} {'decode':>7} {'validate':>8}  us/sample")
    for wire in ("rows", "columns"):
        result = measure(wire == "columns", args.batches, args.repeat)
        print(
            f"{wire:<8} {result['bytes_per_sample']:>8.1f} {result['parse_us']:>7.3f} "
            f"{result['decode_us']:>7.3f} {result['validate_us']:>8.3f}"
        )
    print(f"load average (1 min): {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
