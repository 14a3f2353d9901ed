"""Ingest benchmark: one collector process, 100 agent streams from another process.

For each store (a fresh SQLite file; a fresh PostgreSQL database on
127.0.0.1:5432, dropped afterwards) this starts ``python -m dealerpulse
collector`` as a subprocess, registers a dealer, and runs ``bench.loadgen`` as a
separate process twice: closed loop (every stream keeps a window of batches
unacked: the maximum rate) and then open loop at half the measured maximum
(the ack latency an agent sees at a sustainable load). Afterwards the stored
rows are counted: a run whose database does not hold exactly the acked
samples is void and the benchmark fails.

    python -m bench.ingest [--store sqlite --store postgresql] [--duration-s 20]

Prints a table and writes bench/results/ingest.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import psutil
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sqlalchemy import func, select

from bench.store_write import DEFAULT_PG_ADMIN, temporary_pg_database
from collector.admin import add_dealer
from collector.store import open_store
from collector.store.schema import ingest_batches, samples

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "ingest.json"
STORES = ("sqlite", "postgresql")


class BenchError(Exception):
    """The benchmark could not run, or its result is void."""


@dataclass
class Run:
    store: str
    mode: str
    streams: int
    channels: int
    batch_samples: int
    duration_s: float
    offered_samples_s: float | None
    samples_per_s: float
    ack_p50_ms: float
    ack_p99_ms: float
    ack_max_ms: float
    retries: int
    rejected: int
    samples_stored: int
    collector_cpu_percent: float
    # Robust to a busy machine, unlike the rates: what one million samples cost.
    collector_cpu_s_per_million: float
    # PostgreSQL's own CPU for the same samples (None on SQLite: in the collector).
    database_cpu_s_per_million: float | None
    loadgen_cpu_percent: float
    wire: str
    load_average_1m: float


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model or platform.processor(),
        "ram_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        # The machine is shared with other jobs: the load says how much.
        "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()],
        "python_loop_ns": python_loop_ns(),
    }


def python_loop_ns(iterations: int = 2_000_000, repeats: int = 3) -> float:
    """Nanoseconds per iteration of a plain Python loop, best of ``repeats``.

    The same virtual machine type has run at very different speeds on
    different days (the collector's CPU-s per million samples doubled with no
    code change): this probe, taken with every result, says how fast this one
    ran, so figures from different days can be compared.
    """
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        total = 0
        for i in range(iterations):
            total += i
        best = min(best, time.perf_counter() - started)
    return round(1e9 * best / iterations, 1)


def postgres_cpu_s() -> float:
    """CPU seconds of the local PostgreSQL server so far: its live processes, and
    the backends that already exited (counted in the postmaster's children times).

    The collector's work does not end at its process: on PostgreSQL a large part
    of storing a sample is the server's, and a comparison with a peer that
    stores in-process must count it.
    """
    total = 0.0
    for process in psutil.process_iter(["name", "username"]):
        if process.info["name"] != "postgres" or process.info["username"] != "postgres":
            continue
        with contextlib.suppress(psutil.Error):
            times = process.cpu_times()
            total += times.user + times.system
            parent = process.parent()
            if parent is None or parent.name() != "postgres":  # the postmaster
                total += times.children_user + times.children_system
    return total


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def database(store: str, folder: Path, pg_admin: str) -> Iterator[str]:
    if store == "sqlite":
        yield f"sqlite:///{folder}/ingest-bench.db"
        return
    with temporary_pg_database(pg_admin) as url:
        if url is None:
            raise BenchError(f"PostgreSQL at {pg_admin} is not reachable")
        yield url


def register_dealer(url: str) -> str:
    """Migrate the fresh database and register the bench dealer; returns its token."""
    store = open_store(url)
    try:
        _, token = add_dealer(store, "Bench Motors", "bench-motors")
    finally:
        store.close()
    return token


@contextlib.contextmanager
def collector(url: str, folder: Path, extra: list[str]) -> Iterator[tuple[str, psutil.Process]]:
    """A collector subprocess serving on a free loopback port, until the block ends."""
    target = f"127.0.0.1:{free_port()}"
    command = [sys.executable, "-m", "dealerpulse", "--log-level", "WARNING", "collector"]
    command += ["--listen", target, "--db", url, *extra]
    log_path = folder / "collector.log"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with open(log_path, "ab") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        _wait_serving(target, process, log_path)
        yield target, psutil.Process(process.pid)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
            raise BenchError("the collector did not stop within 60 s") from None
        if code != 0:
            raise BenchError(f"the collector exited with {code}: {_tail(log_path)}")


def _wait_serving(target: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + 60
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise BenchError(f"the collector exited at start: {_tail(log_path)}")
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
            except grpc.RpcError:
                time.sleep(0.1)  # polling a condition with a deadline, not synchronisation
                continue
            if reply.status == health_pb2.HealthCheckResponse.SERVING:
                return
    raise BenchError(f"the collector did not serve within 60 s: {_tail(log_path)}")


def _tail(path: Path, lines: int = 20) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def run_loadgen(
    target: str, token: str, args: argparse.Namespace, rate: float | None
) -> dict[str, Any]:
    command = [sys.executable, "-m", "bench.loadgen", "--target", target, "--token", token]
    command += ["--streams", str(args.streams), "--channels", str(args.channels)]
    command += ["--batch-samples", str(args.batch_samples)]
    warmup_s = args.warmup_s if rate is None else args.open_warmup_s
    command += ["--duration-s", str(args.duration_s), "--warmup-s", str(warmup_s)]
    if rate is not None and not args.open_cold:
        # The open run's 100 agents are new to the collector: their first batches
        # create 50,000 series. Stored before the clock starts, as for a fleet
        # already streaming: the steady half load is what is measured.
        command.append("--prime")
    command += ["--batches-per-stream", str(args.batches_per_stream), "--wire", args.wire]
    if rate is not None:
        command += ["--rate-samples-s", str(round(rate)), "--window", str(args.open_window)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    timeout_s = args.duration_s + 120
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout_s)
    if done.returncode != 0:
        raise BenchError(f"the load generator failed: {done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def measure(
    store: str,
    target: str,
    token: str,
    process: psutil.Process,
    args: argparse.Namespace,
    rate: float | None,
) -> tuple[Run, dict[str, Any]]:
    before, database_before = process.cpu_times(), postgres_cpu_s()
    started = time.monotonic()
    result = run_loadgen(target, token, args, rate)
    elapsed = time.monotonic() - started
    after, database_cpu_s = process.cpu_times(), postgres_cpu_s() - database_before
    cpu_s = (after.user + after.system) - (before.user + before.system)
    millions = max(1, result["total_samples_stored"]) / 1e6
    if result["rejected"] or result["unanswered"]:
        raise BenchError(
            f"{result['rejected']} batches rejected, {result['unanswered']} unanswered"
        )
    run = Run(
        store=store,
        mode="closed" if rate is None else "open",
        streams=result["streams"],
        channels=result["channels"],
        batch_samples=result["batch_samples"],
        duration_s=result["duration_s"],
        offered_samples_s=rate and round(rate),
        samples_per_s=result["samples_per_s"],
        ack_p50_ms=result["ack_p50_ms"],
        ack_p99_ms=result["ack_p99_ms"],
        ack_max_ms=result["ack_max_ms"],
        retries=result["retries"],
        rejected=result["rejected"],
        samples_stored=result["total_samples_stored"],
        # Includes the collector's idle moments while the loadgen builds its batches.
        collector_cpu_percent=round(100 * cpu_s / elapsed, 1),
        collector_cpu_s_per_million=round(cpu_s / millions, 2),
        database_cpu_s_per_million=(
            round(database_cpu_s / millions, 2) if store == "postgresql" else None
        ),
        loadgen_cpu_percent=result["loadgen_cpu_percent"],
        wire=args.wire,
        load_average_1m=round(os.getloadavg()[0], 2),
    )
    return run, result


def stored_counts(url: str) -> tuple[int, int]:
    """(rows in samples, samples recorded in ingest_batches) of the whole database."""
    store = open_store(url)
    try:
        with store.engine.connect() as connection:
            rows = connection.scalar(select(func.count()).select_from(samples)) or 0
            booked = connection.scalar(select(func.sum(ingest_batches.c.samples))) or 0
    finally:
        store.close()
    return int(rows), int(booked)


def bench_store(store: str, args: argparse.Namespace) -> list[Run]:
    with (
        tempfile.TemporaryDirectory(prefix="dp-ingest-bench-") as tmp,
        database(store, Path(tmp), args.pg_admin) as url,
    ):
        token = register_dealer(url)
        extra = shlex.split(args.collector_args)
        with collector(url, Path(tmp), extra) as (target, process):
            closed, _ = measure(store, target, token, process, args, None)
            print(_row(closed), flush=True)
            opened, _ = measure(store, target, token, process, args, closed.samples_per_s / 2)
            print(_row(opened), flush=True)
        rows, booked = stored_counts(url)
    acked = closed.samples_stored + opened.samples_stored
    if rows != acked or booked != acked:
        raise BenchError(
            f"{store}: {acked} samples acked but {rows} rows stored "
            f"({booked} booked in ingest_batches): the run is void"
        )
    return [closed, opened]


HEADER = (
    f"{'store':<11} {'mode':<7} {'offered/s':>10} {'samples/s':>10} {'p50 ms':>8} "
    f"{'p99 ms':>8} {'retries':>7} {'stored':>9} {'coll cpu':>8} {'cpu s/M':>7} {'pg s/M':>6} "
    f"{'gen cpu':>8} {'load':>5}"
)


def _row(run: Run) -> str:
    offered = f"{run.offered_samples_s:,}" if run.offered_samples_s else "max"
    return (
        f"{run.store:<11} {run.mode:<7} {offered:>10} {run.samples_per_s:>10,.0f} "
        f"{run.ack_p50_ms:>8.1f} {run.ack_p99_ms:>8.1f} {run.retries:>7} "
        f"{run.samples_stored:>9,} {run.collector_cpu_percent:>7.0f}% "
        f"{run.collector_cpu_s_per_million:>7.2f} {_or_dash(run.database_cpu_s_per_million):>6} "
        f"{run.loadgen_cpu_percent:>7.0f}% "
        f"{run.load_average_1m:>5.2f}"
    )


def _or_dash(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.ingest",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--store", action="append", choices=STORES, help="default: both")
    parser.add_argument("--streams", type=int, default=100)
    parser.add_argument("--channels", type=int, default=8)
    parser.add_argument("--batch-samples", type=int, default=500)
    parser.add_argument("--batches-per-stream", type=int, default=160)
    parser.add_argument(
        "--wire", choices=("rows", "columns"), default="columns", help="the loadgen's sample form"
    )
    parser.add_argument("--duration-s", type=float, default=20.0, help="per loadgen run")
    parser.add_argument("--warmup-s", type=float, default=3.0, help="closed loop: not measured")
    parser.add_argument(
        "--open-warmup-s",
        type=float,
        default=8.0,
        help="open loop: not measured",
    )
    parser.add_argument(
        "--open-cold",
        action="store_true",
        help="open loop: new agents create their series inside the measured run",
    )
    parser.add_argument("--open-window", type=int, default=16, help="open loop: unacked/stream")
    parser.add_argument("--collector-args", default="", help="extra collector options")
    parser.add_argument("--pg-admin", default=DEFAULT_PG_ADMIN)
    parser.add_argument("--json", type=Path, default=RESULTS, help="where to write results")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    stores = args.store or list(STORES)
    print(
        f"ingest: {args.streams} streams x {args.batch_samples}-sample batches, "
        f"{args.channels} channels, {args.duration_s:g} s per run"
    )
    print(HEADER, flush=True)
    runs: list[Run] = []
    try:
        for store in stores:
            runs += bench_store(store, args)
    except BenchError as exc:
        print(f"ingest benchmark failed: {exc}", file=sys.stderr)
        return 1
    report = {
        "benchmark": "ingest",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": shlex.join([Path(sys.executable).name, "-m", "bench.ingest", *argv]),
        "machine": machine(),
        "verified": "stored rows == acked samples for every store",
        "runs": [asdict(run) for run in runs],
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"results: {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
