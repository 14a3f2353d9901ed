"""Ingest matrix: 10, 100 and 1,000 agent streams, SQLite and PostgreSQL, 1 and 3 collectors.

    python -m bench.ingest_matrix                    # the full matrix (~15 min)
    python -m bench.ingest_matrix --quick            # smoke check, < 2 min
    python -m bench.ingest_matrix --store postgresql --streams 1000 --collectors 3

Each cell gets a fresh database (a SQLite file; a temporary PostgreSQL
database on 127.0.0.1:5432, dropped afterwards), N collector processes
(``python -m dealerpulse collector``, each on its own loopback port: three
*separate* collectors sharing one PostgreSQL, as behind a TCP load balancer)
and several load-generator processes (``bench.loadgen``, at most
``--streams-per-loadgen`` streams each, spread evenly over the collectors) so
that 1,000 streams are not bottlenecked by one Python process. The load
generators start their timed loops at one wall-clock moment. Each stream is
one agent with ``--series-per-agent`` series (default 50, a host agent's
shape; 500-sample batches then hold 10 points per series), so the store holds
500, 5,000 and 50,000 series at 10, 100 and 1,000 streams. Closed loop
first (the maximum rate), then open loop at half of it (the ack latency an
agent sees at a sustainable load), like ``bench.ingest``. Afterwards the
stored rows must equal the acked samples, or the run is void.

Three collectors on one SQLite file are not a supported setup (one writer at
a time; the design's scale-out is PostgreSQL): those cells are skipped.

During one cell (``--profile-cell``, closed loop) py-spy samples the first
collector; ``bench.profile_summary`` turns that into shares (protobuf decode,
validation, SQL/driver, other), written to bench/results/ingest-profile.json.

Prints a table and writes bench/results/ingest_matrix.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

from bench import profile_summary
from bench.ingest import (
    REPO,
    BenchError,
    collector,
    database,
    machine,
    register_dealer,
    stored_counts,
)
from bench.store_write import DEFAULT_PG_ADMIN

RESULTS = REPO / "bench" / "results"
STORES = ("sqlite", "postgresql")
SQLITE_MULTI = "several collectors on one SQLite file are not a supported setup"


@dataclass(frozen=True)
class Cell:
    store: str
    collectors: int
    streams: int

    @property
    def name(self) -> str:
        return f"{self.store}/{self.collectors}/{self.streams}"


@dataclass
class MatrixRun:
    store: str
    collectors: int
    streams: int
    loadgens: int
    mode: str
    offered_samples_s: int | None
    samples_per_s: float
    ack_p50_ms: float
    ack_p99_ms: float
    ack_max_ms: float
    acks_measured: int
    retries: int
    samples_stored: int
    # Sums over the processes, in % of one core (the machine has os.cpu_count()).
    collector_cpu_percent: float
    loadgen_cpu_percent: float
    # Some stream used up its pre-built batches before the deadline: rate understated.
    exhausted: bool
    # Unacked batches per stream.
    window: int


@dataclass(frozen=True)
class Plan:
    """What one load generator process does."""

    target: str
    streams: int
    rate: float | None
    window: int
    out: Path
    latencies: Path


def loadgen_plans(
    cell: Cell, targets: list[str], rate: float | None, args: argparse.Namespace, folder: Path
) -> list[Plan]:
    wanted = math.ceil(cell.streams / args.streams_per_loadgen)
    count = cell.collectors * math.ceil(wanted / cell.collectors)
    sizes = [cell.streams // count + (i < cell.streams % count) for i in range(count)]
    return [
        Plan(
            target=targets[i % len(targets)],
            streams=size,
            rate=None if rate is None else rate * size / cell.streams,
            window=closed_window(cell.streams, args) if rate is None else args.open_window,
            out=folder / f"loadgen-{i}.json",
            latencies=folder / f"latencies-{i}.json",
        )
        for i, size in enumerate(sizes)
        if size
    ]


def closed_window(streams: int, args: argparse.Namespace) -> int:
    """Closed loop: unacked batches per stream, --window but at most --max-in-flight overall.

    With 1,000 streams x 4 x 500 samples in flight the run would measure how long a
    2-million-sample backlog takes to drain, not the rate.
    """
    budget: int = args.max_in_flight // (streams * args.batch_samples)
    return max(1, min(int(args.window), budget))


def batches_per_stream(streams: int, args: argparse.Namespace) -> int:
    """Pre-built batches per stream: enough for the run, bounded in memory overall."""
    total: int = args.batches_total
    return max(2 * int(args.window), math.ceil(total / streams))


def loadgen_command(
    plan: Plan, token: str, per_stream: int, start_at: float, args: argparse.Namespace
) -> list[str]:
    command = [sys.executable, "-m", "bench.loadgen", "--target", plan.target, "--token", token]
    command += ["--streams", str(plan.streams), "--channels", str(min(8, plan.streams))]
    command += ["--batch-samples", str(args.batch_samples), "--window", str(plan.window)]
    command += ["--drain-timeout-s", str(args.drain_timeout_s)]
    command += ["--duration-s", str(args.duration_s), "--warmup-s", str(args.warmup_s)]
    command += ["--batches-per-stream", str(per_stream), "--start-at", f"{start_at:.3f}"]
    command += ["--latencies", str(plan.latencies)]
    command += ["--series-per-agent", str(args.series_per_agent)]
    if plan.rate is not None:
        command += ["--rate-samples-s", str(round(plan.rate))]
    return command


def run_loadgens(
    plans: list[Plan],
    token: str,
    per_stream: int,
    args: argparse.Namespace,
    collectors: list[psutil.Process],
    profile_to: Path | None,
) -> tuple[list[dict[str, Any]], float]:
    """Run every plan at once; their results and the collectors' CPU in % of one core."""
    start_at = time.time() + args.start_delay_s
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    processes = []
    for plan in plans:
        with plan.out.open("wb") as out:
            command = loadgen_command(plan, token, per_stream, start_at, args)
            processes.append(subprocess.Popen(command, stdout=out, stderr=subprocess.PIPE, env=env))
    time.sleep(max(0.0, start_at - time.time()))  # the agreed start, not synchronisation
    cpu_before = sum(_cpu_s(p) for p in collectors)
    started = time.monotonic()
    with _profiling(collectors[0].pid if profile_to else None, profile_to, args):
        errors = [_finish(p, args.duration_s + 180) for p in processes]
    cpu_percent = 100 * (sum(_cpu_s(p) for p in collectors) - cpu_before)
    cpu_percent /= time.monotonic() - started
    if any(errors):
        raise BenchError(f"a load generator failed: {next(e for e in errors if e)}")
    results = [json.loads(plan.out.read_text().strip().splitlines()[-1]) for plan in plans]
    return results, cpu_percent


def _cpu_s(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def _finish(process: subprocess.Popen[bytes], timeout_s: float) -> str:
    try:
        _, stderr = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        return f"no result within {timeout_s:.0f} s"
    return "" if process.returncode == 0 else stderr.decode(errors="replace")[-2000:]


@contextlib.contextmanager
def _profiling(pid: int | None, raw: Path | None, args: argparse.Namespace) -> Iterator[None]:
    """py-spy on ``pid`` over the measured window (after the warm-up), while the block runs."""
    if pid is None or raw is None:
        yield
        return
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(py_spy).exists():
        raise BenchError("py-spy is not installed: .venv/bin/pip install -e '.[dev]'")
    time.sleep(args.warmup_s)  # profile the steady state only
    seconds = max(1, int(args.duration_s - args.warmup_s))
    command = [py_spy, "record", "--pid", str(pid), "--duration", str(seconds)]
    command += ["--rate", "100", "--nonblocking", "--format", "raw", "--output", str(raw)]
    spy = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        yield
    finally:
        _, stderr = spy.communicate(timeout=seconds + 60)
        if spy.returncode != 0 or not raw.exists():
            raise BenchError(f"py-spy failed: {stderr.decode(errors='replace')[-1000:]}")


def combine(
    cell: Cell,
    plans: list[Plan],
    results: list[dict[str, Any]],
    collector_cpu: float,
    per_stream: int,
) -> MatrixRun:
    latencies: list[float] = []
    for plan in plans:
        latencies += json.loads(plan.latencies.read_text())
    for result in results:
        if result["rejected"] or result["unanswered"]:
            raise BenchError(
                f"{cell.name}: {result['rejected']} batches rejected, "
                f"{result['unanswered']} unanswered"
            )
    offered = results[0]["offered_rate_samples_s"]
    return MatrixRun(
        store=cell.store,
        collectors=cell.collectors,
        streams=cell.streams,
        loadgens=len(plans),
        mode="closed" if offered is None else "open",
        offered_samples_s=None
        if offered is None
        else round(sum(r["offered_rate_samples_s"] for r in results)),
        samples_per_s=round(sum(r["samples_per_s"] for r in results), 1),
        ack_p50_ms=round(_quantile(latencies, 50), 1),
        ack_p99_ms=round(_quantile(latencies, 99), 1),
        ack_max_ms=round(max(latencies, default=0.0), 1),
        acks_measured=len(latencies),
        retries=sum(r["retries"] for r in results),
        samples_stored=sum(r["total_samples_stored"] for r in results),
        collector_cpu_percent=round(collector_cpu, 1),
        loadgen_cpu_percent=round(sum(r["loadgen_cpu_percent"] for r in results), 1),
        exhausted=any(r["total_batches_stored"] >= r["streams"] * per_stream for r in results),
        window=plans[0].window,
    )


def _quantile(values: list[float], q: int) -> float:
    if len(values) < 2:
        return values[0] if values else 0.0
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def bench_cell(cell: Cell, args: argparse.Namespace, profile_raw: Path | None) -> list[MatrixRun]:
    per_stream = batches_per_stream(cell.streams, args)
    extra = shlex.split(args.collector_args)
    with (
        tempfile.TemporaryDirectory(prefix="dp-ingest-matrix-") as tmp,
        database(cell.store, Path(tmp), args.pg_admin) as url,
    ):
        folder = Path(tmp)
        token = register_dealer(url)
        with contextlib.ExitStack() as stack:
            served = [
                stack.enter_context(collector(url, folder, extra)) for _ in range(cell.collectors)
            ]
            targets = [target for target, _ in served]
            processes = [process for _, process in served]
            runs: list[MatrixRun] = []
            for rate in _rates(args):
                offered = None if rate is None else rate * runs[0].samples_per_s
                plans = loadgen_plans(cell, targets, offered, args, folder)
                profile_to = profile_raw if offered is None else None
                results, cpu = run_loadgens(plans, token, per_stream, args, processes, profile_to)
                runs.append(combine(cell, plans, results, cpu, per_stream))
                print(_row(runs[-1]), flush=True)
        rows, booked = stored_counts(url)
    acked = sum(run.samples_stored for run in runs)
    if rows != acked or booked != acked:
        raise BenchError(
            f"{cell.name}: {acked} samples acked but {rows} rows stored "
            f"({booked} booked in ingest_batches): the run is void"
        )
    return runs


def _rates(args: argparse.Namespace) -> list[float | None]:
    """Closed loop (None), then open loop at this fraction of the closed-loop rate."""
    return [None] if args.quick or args.closed_only else [None, 0.5]


def cells(args: argparse.Namespace) -> tuple[list[Cell], list[dict[str, Any]]]:
    """The cells to run, and the skipped ones with the reason."""
    run, skipped = [], []
    for store in args.store:
        for collectors in args.collectors:
            for streams in args.streams:
                cell = Cell(store, collectors, streams)
                if store == "sqlite" and collectors > 1:
                    skipped.append({**asdict(cell), "reason": SQLITE_MULTI})
                else:
                    run.append(cell)
    return run, skipped


HEADER = (
    f"{'store':<11} {'coll':>4} {'streams':>7} {'gens':>4} {'mode':<6} {'offered/s':>9} "
    f"{'samples/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'retries':>7} {'stored':>9} "
    f"{'coll cpu':>8} {'gen cpu':>7}"
)


def _row(run: MatrixRun) -> str:
    offered = f"{run.offered_samples_s:,}" if run.offered_samples_s else "max"
    flag = "  (ran out of batches: raise --batches-total)" if run.exhausted else ""
    return (
        f"{run.store:<11} {run.collectors:>4} {run.streams:>7} {run.loadgens:>4} {run.mode:<6} "
        f"{offered:>9} {run.samples_per_s:>10,.0f} {run.ack_p50_ms:>8.1f} "
        f"{run.ack_p99_ms:>8.1f} {run.retries:>7} {run.samples_stored:>9,} "
        f"{run.collector_cpu_percent:>7.0f}% {run.loadgen_cpu_percent:>6.0f}%{flag}"
    )


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.ingest_matrix",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="smoke check: 100 streams, 8 s")
    parser.add_argument("--store", action="append", choices=STORES, help="default: both")
    parser.add_argument("--streams", action="append", type=int, help="default: 10, 100, 1000")
    parser.add_argument("--collectors", action="append", type=int, help="default: 1 and 3")
    parser.add_argument("--closed-only", action="store_true", help="skip the open-loop runs")
    parser.add_argument("--streams-per-loadgen", type=int, default=250)
    parser.add_argument("--batch-samples", type=int, default=500)
    parser.add_argument("--batches-total", type=int, default=24000, help="pre-built, all streams")
    parser.add_argument(
        "--series-per-agent", type=int, default=50, help="a host agent has ~50 series"
    )
    parser.add_argument("--window", type=int, default=4, help="closed loop: unacked/stream")
    parser.add_argument("--open-window", type=int, default=16, help="open loop: unacked/stream")
    parser.add_argument(
        "--max-in-flight",
        type=int,
        default=200_000,
        help="closed loop: unacked samples, all streams",
    )
    parser.add_argument("--drain-timeout-s", type=float, default=90.0, help="after the deadline")
    parser.add_argument("--duration-s", type=float, default=20.0, help="per run")
    parser.add_argument("--warmup-s", type=float, default=3.0)
    parser.add_argument("--start-delay-s", type=float, default=8.0, help="load generator set-up")
    parser.add_argument("--collector-args", default="", help="extra collector options")
    parser.add_argument("--profile-cell", default="postgresql/1/100", help="STORE/N/STREAMS")
    parser.add_argument("--pg-admin", default=DEFAULT_PG_ADMIN)
    parser.add_argument("--json", type=Path, default=RESULTS / "ingest_matrix.json")
    parser.add_argument("--profile-json", type=Path, default=RESULTS / "ingest-profile.json")
    args = parser.parse_args(argv)
    if args.quick:
        args.streams = args.streams or [100]
        args.duration_s, args.warmup_s, args.start_delay_s = 8.0, 2.0, 5.0
        args.batches_total = min(args.batches_total, 4000)
    args.store = args.store or list(STORES)
    args.streams = args.streams or [10, 100, 1000]
    args.collectors = args.collectors or [1, 3]
    if min(args.streams) < 1 or min(args.collectors) < 1:
        parser.error("--streams and --collectors must be at least 1")
    if not 0 <= args.warmup_s < args.duration_s:
        parser.error("--warmup-s must be at least 0 and below --duration-s")
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    todo, skipped = cells(args)
    for store, collectors, reason in sorted(
        {(s["store"], s["collectors"], s["reason"]) for s in skipped}
    ):
        print(f"skipped {store} with {collectors} collectors: {reason}")
    print(HEADER, flush=True)
    runs: list[MatrixRun] = []
    failed: list[dict[str, Any]] = []
    profile: dict[str, Any] | None = None
    try:
        with tempfile.TemporaryDirectory(prefix="dp-profile-") as tmp:
            raw = Path(tmp) / "collector.pyspy.txt"
            for cell in todo:
                profiled = cell.name == args.profile_cell
                try:
                    runs += bench_cell(cell, args, raw if profiled else None)
                except BenchError as exc:
                    # One void cell must not cost the rest of a long matrix.
                    print(f"{cell.name} failed: {exc}", file=sys.stderr, flush=True)
                    failed.append({**asdict(cell), "error": str(exc)})
                    continue
                if profiled:
                    try:
                        profile = write_profile(cell, raw, args)
                    except (OSError, ValueError) as exc:
                        print(f"profile summary failed: {exc}", file=sys.stderr)
    except BenchError as exc:
        print(f"ingest matrix failed: {exc}", file=sys.stderr)
        return 1
    report = {
        "benchmark": "ingest_matrix",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": shlex.join([Path(sys.executable).name, "-m", "bench.ingest_matrix", *argv]),
        "machine": machine(),
        "verified": "stored rows == acked samples in every cell",
        "settings": {k: v for k, v in vars(args).items() if k not in ("json", "profile_json")},
        "runs": [asdict(run) for run in runs],
        "skipped": skipped,
        "failed": failed,
        "profile": profile,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"results: {args.json}")
    return 1 if failed else 0


def write_profile(cell: Cell, raw: Path, args: argparse.Namespace) -> dict[str, Any]:
    summary = profile_summary.summarise_file(raw)
    print(f"profile of the first collector, {cell.name}, closed loop:")
    print(profile_summary.table(summary), flush=True)
    report = {
        "benchmark": "ingest_profile",
        "cell": asdict(cell),
        "window_s": args.duration_s - args.warmup_s,
        "tool": "py-spy record --rate 100 --nonblocking --format raw (Python frames only)",
        "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()],
        **asdict(summary),
    }
    args.profile_json.parent.mkdir(parents=True, exist_ok=True)
    args.profile_json.write_text(json.dumps(report, indent=2) + "\n")
    return {"json": str(args.profile_json), "shares_percent": summary.shares_percent}


if __name__ == "__main__":
    raise SystemExit(main())
