"""The same samples into our collector and into InfluxDB 1.x: samples/s, ours over theirs.

    apt-get install -y influxdb          # once (or: make bench-deps); this bench installs nothing
    python -m bench.influx                                    # 2,000,000 samples, both stores
    python -m bench.influx --samples 200000 --store sqlite    # a quick look

Fixed work, same shape, same concurrency, in one run:

- ours: for each store, a fresh database and one collector process
  (``python -m dealerpulse collector``); ``bench.loadgen`` in its own
  process sends the samples as ``--streams`` agent streams with ``--window``
  unacked batches each, 500 samples per batch; the clock stops at the last
  ack. Stored rows must equal the acked samples.
- InfluxDB: ``influxd`` started as a subprocess with its own config in a temp
  dir (loopback ports, data/WAL/meta in the temp dir, usage reporting and the
  _internal monitor store off, WAL fsync on every write like our
  ``synchronous=FULL``), fed the same samples as line protocol, 500 per
  ``POST /write?db=bench&precision=ms``, from ``--streams`` x ``--window``
  keep-alive HTTP connections (stdlib http.client, one thread each: one request
  in flight per connection). Bodies are built before the clock starts.
  Afterwards ``SELECT count(value)`` must find every point.

Prints a table and writes bench/results/influx.json.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

from bench.ingest import (
    REPO,
    BenchError,
    collector,
    database,
    free_port,
    machine,
    postgres_cpu_s,
    register_dealer,
    stored_counts,
)
from bench.loadgen import INTERVAL_MS, sample_rows
from bench.store_write import DEFAULT_PG_ADMIN

RESULTS = REPO / "bench" / "results" / "influx.json"
STORES = ("sqlite", "postgresql")
DB = "bench"
DEALER = "bench-motors"


@dataclass
class Side:
    system: str
    samples: int
    seconds: float
    samples_per_s: float
    request_p50_ms: float
    request_p99_ms: float
    server_cpu_percent: float
    client_cpu_percent: float
    retries: int = 0
    # Ours on PostgreSQL: the database server's CPU, besides the collector's.
    database_cpu_percent: float | None = None


# ---- ours


def run_ours(store: str, args: argparse.Namespace, per_stream: int) -> Side:
    with (
        tempfile.TemporaryDirectory(prefix="dp-influx-ours-") as tmp,
        database(store, Path(tmp), args.pg_admin) as url,
    ):
        token = register_dealer(url)
        with collector(url, Path(tmp), []) as (target, process):
            before, database_before = _cpu_s(process), postgres_cpu_s()
            result = _loadgen(target, token, args, per_stream, Path(tmp))
            server_cpu = _cpu_s(process) - before
            database_cpu = postgres_cpu_s() - database_before
        rows, _ = stored_counts(url)
    stored = int(result["total_samples_stored"])
    if result["rejected"] or result["unanswered"] or rows != stored:
        raise BenchError(
            f"{store}: {result['rejected']} rejected, {result['unanswered']} unanswered, "
            f"{stored} acked but {rows} rows stored: the run is void"
        )
    seconds = float(result["duration_s"])
    return Side(
        system=f"dealerpulse ({store})",
        samples=stored,
        seconds=seconds,
        samples_per_s=round(stored / seconds, 1),
        request_p50_ms=float(result["ack_p50_ms"]),
        request_p99_ms=float(result["ack_p99_ms"]),
        server_cpu_percent=round(100 * server_cpu / seconds, 1),
        client_cpu_percent=float(result["loadgen_cpu_percent"]),
        retries=int(result["retries"]),
        database_cpu_percent=(
            round(100 * database_cpu / seconds, 1) if store == "postgresql" else None
        ),
    )


def _loadgen(
    target: str, token: str, args: argparse.Namespace, per_stream: int, folder: Path
) -> dict[str, Any]:
    command = [sys.executable, "-m", "bench.loadgen", "--target", target, "--token", token]
    command += ["--streams", str(args.streams), "--channels", str(min(8, args.streams))]
    command += ["--batch-samples", str(args.batch_samples), "--window", str(args.window)]
    command += ["--batches-per-stream", str(per_stream), "--warmup-s", "0"]
    command += ["--series-per-agent", str(args.series_per_agent), "--wire", args.wire]
    # Fixed work: the deadline is only a bound; the run ends at the last ack.
    command += ["--duration-s", str(args.timeout_s), "--drain-timeout-s", "0"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        command, capture_output=True, text=True, env=env, timeout=args.timeout_s + 120
    )
    if done.returncode != 0:
        raise BenchError(f"the load generator failed: {done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    if result["total_batches_stored"] < args.streams * per_stream:
        raise BenchError(f"not every batch was acked within --timeout-s {args.timeout_s}")
    return result


def _cpu_s(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


# ---- InfluxDB


def influx_config(folder: Path, rpc_port: int, http_port: int) -> str:
    return f"""\
reporting-disabled = true
bind-address = "127.0.0.1:{rpc_port}"

[meta]
  dir = "{folder}/meta"
  logging-enabled = false

[data]
  dir = "{folder}/data"
  wal-dir = "{folder}/wal"
  wal-fsync-delay = "0s"
  query-log-enabled = false
  max-series-per-database = 0
  max-values-per-tag = 0

[monitor]
  store-enabled = false

[subscriber]
  enabled = false

[continuous_queries]
  enabled = false

[http]
  enabled = true
  bind-address = "127.0.0.1:{http_port}"
  log-enabled = false
  pprof-enabled = false
  max-body-size = 0
"""


@contextlib.contextmanager
def influxd(folder: Path) -> Iterator[tuple[int, psutil.Process]]:
    """A private influxd on loopback ports until the block ends: (HTTP port, process)."""
    binary = shutil.which("influxd")
    if binary is None:
        raise BenchError("influxd is not installed: apt-get install -y influxdb (make bench-deps)")
    http_port = free_port()
    config = folder / "influxdb.conf"
    config.write_text(influx_config(folder, free_port(), http_port))
    log_path = folder / "influxd.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [binary, "run", "-config", str(config)], stdout=log, stderr=subprocess.STDOUT
        )
    try:
        _wait_ping(http_port, process, log_path)
        yield http_port, psutil.Process(process.pid)
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def _wait_ping(port: int, process: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BenchError(f"influxd exited at start: {log_path.read_text()[-2000:]}")
        with contextlib.suppress(OSError):
            if _request(port, "GET", "/ping")[0] == 204:
                return
        time.sleep(0.1)  # polling a condition with a deadline
    raise BenchError(f"influxd did not answer /ping within 60 s: {log_path.read_text()[-2000:]}")


def _request(port: int, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request(method, path, body=body)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def _query(port: int, query: str) -> dict[str, Any]:
    status, body = _request(port, "POST", "/query?" + urllib.parse.urlencode({"q": query}))
    if status != 200:
        raise BenchError(f"InfluxDB query {query!r} answered {status}: {body[:500]!r}")
    answer: dict[str, Any] = json.loads(body)
    return answer


def line_bodies(
    agent_id: str, per_stream: int, start_ms: int, args: argparse.Namespace
) -> list[bytes]:
    """One stream's batches as line protocol, the same samples as bench.loadgen sends."""
    tags = f"agent_id={agent_id},dealer_id={DEALER}"
    bodies = []
    for seq in range(1, per_stream + 1):
        rows = sample_rows(seq, args.batch_samples, start_ms, args.series_per_agent)
        lines = [
            f"{name},{tags},instance={instance} value={value!r} {time_ms}"
            for name, instance, value, time_ms in rows
        ]
        bodies.append("\n".join(lines).encode())
    return bodies


def run_influx(args: argparse.Namespace, per_stream: int) -> Side:
    start_ms = int(time.time() * 1000) - (per_stream + 1) * INTERVAL_MS
    run = uuid.uuid4().hex[:8]
    # A stream with W batches in flight = W connections taking turns on its batches.
    plans = [
        bodies[part :: args.window]
        for i in range(args.streams)
        for bodies in [line_bodies(f"bench-{run}-{i}", per_stream, start_ms, args)]
        for part in range(args.window)
    ]
    folder = tempfile.TemporaryDirectory(prefix="dp-influx-")
    with folder as tmp, influxd(Path(tmp)) as (port, server):
        _query(port, f"CREATE DATABASE {DB}")
        before = _cpu_s(server)
        seconds, latencies, client_cpu = _write_all(port, plans)
        server_cpu = _cpu_s(server) - before
        stored = _count_points(port)
    expected = per_stream * args.streams * args.batch_samples
    if stored != expected:
        raise BenchError(f"InfluxDB holds {stored} points of {expected} written: the run is void")
    return Side(
        system=f"InfluxDB {_influx_version()}",
        samples=stored,
        seconds=round(seconds, 2),
        samples_per_s=round(stored / seconds, 1),
        request_p50_ms=round(_quantile(latencies, 50), 2),
        request_p99_ms=round(_quantile(latencies, 99), 2),
        server_cpu_percent=round(100 * server_cpu / seconds, 1),
        client_cpu_percent=round(100 * client_cpu / seconds, 1),
    )


def _write_all(port: int, plans: list[list[bytes]]) -> tuple[float, list[float], float]:
    """Send every plan on its own connection and thread: (seconds, latencies ms, client CPU s)."""
    latencies: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()
    go = threading.Event()
    path = f"/write?db={DB}&precision=ms"

    def send(bodies: list[bytes]) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        mine: list[float] = []
        try:
            connection.connect()
            go.wait()
            for body in bodies:
                sent = time.monotonic()
                connection.request("POST", path, body=body)
                response = connection.getresponse()
                answer = response.read()
                if response.status != 204:
                    raise BenchError(f"/write answered {response.status}: {answer[:300]!r}")
                mine.append((time.monotonic() - sent) * 1000)
        except (OSError, http.client.HTTPException, BenchError) as exc:
            with lock:
                failures.append(f"{type(exc).__name__}: {exc}")
        finally:
            connection.close()
            with lock:
                latencies.extend(mine)

    threads = [threading.Thread(target=send, args=(plan,), daemon=True) for plan in plans]
    for thread in threads:
        thread.start()
    cpu_started, started = time.process_time(), time.monotonic()
    go.set()
    for thread in threads:
        thread.join()
    seconds, cpu_s = time.monotonic() - started, time.process_time() - cpu_started
    if failures:
        raise BenchError(f"{len(failures)} InfluxDB writers failed, first: {failures[0]}")
    return seconds, latencies, cpu_s


def _count_points(port: int) -> int:
    answer = _query(port, f'SELECT count("value") FROM "{DB}"."autogen"./.*/')
    total = 0
    for result in answer.get("results", []):
        if "error" in result:
            raise BenchError(f"InfluxDB count failed: {result['error']}")
        for series in result.get("series", []):
            total += sum(int(row[1]) for row in series["values"])
    return total


def _influx_version() -> str:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        done = subprocess.run(["influxd", "version"], capture_output=True, text=True, timeout=10)
        return done.stdout.split()[1] if done.stdout.split()[1:] else "1.x"
    return "1.x"


def _quantile(values: list[float], q: int) -> float:
    if len(values) < 2:
        return values[0] if values else 0.0
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


# ---- the run


def table(sides: list[Side], influx: Side) -> str:
    rows = [
        f"{'system':<26} {'samples':>9} {'seconds':>8} {'samples/s':>10} {'vs Influx':>9} "
        f"{'p50 ms':>8} {'p99 ms':>8} {'server cpu':>10} {'pg cpu':>7} {'client cpu':>10}"
    ]
    for side in [*sides, influx]:
        ratio = side.samples_per_s / influx.samples_per_s
        rows.append(
            f"{side.system:<26} {side.samples:>9,} {side.seconds:>8.1f} "
            f"{side.samples_per_s:>10,.0f} {ratio:>9.2f} {side.request_p50_ms:>8.1f} "
            f"{side.request_p99_ms:>8.1f} {side.server_cpu_percent:>9.0f}% "
            f"{_percent_or_dash(side.database_cpu_percent):>7} {side.client_cpu_percent:>9.0f}%"
        )
    return "\n".join(rows)


def _percent_or_dash(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}%"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.influx",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--samples", type=int, default=2_000_000)
    parser.add_argument("--store", action="append", choices=STORES, help="default: both")
    parser.add_argument("--streams", type=int, default=100, help="concurrent agent streams")
    parser.add_argument("--window", type=int, default=1, help="batches in flight per stream")
    parser.add_argument("--batch-samples", type=int, default=500)
    parser.add_argument("--series-per-agent", type=int, default=50)
    parser.add_argument(
        "--wire",
        choices=("rows", "columns"),
        default="columns",
        help="our side's sample form (bench.loadgen --wire)",
    )
    parser.add_argument("--timeout-s", type=float, default=900.0, help="bound of each run")
    parser.add_argument("--pg-admin", default=DEFAULT_PG_ADMIN)
    parser.add_argument("--json", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    per_batch = args.streams * args.batch_samples
    if args.samples < per_batch or args.samples % per_batch:
        parser.error(f"--samples must be a multiple of --streams x --batch-samples ({per_batch})")
    if not 1 <= args.series_per_agent <= args.batch_samples:
        parser.error("--series-per-agent must be between 1 and --batch-samples")
    args.store = args.store or list(STORES)
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    per_stream = args.samples // (args.streams * args.batch_samples)
    print(
        f"influx: {args.samples:,} samples, {args.streams} streams x {args.window} in flight, "
        f"{args.batch_samples} per batch/request, {args.series_per_agent} series per agent, "
        f"our wire form: {args.wire}",
        flush=True,
    )
    try:
        ours = [run_ours(store, args, per_stream) for store in args.store]
        influx = run_influx(args, per_stream)
    except BenchError as exc:
        print(f"influx benchmark failed: {exc}", file=sys.stderr)
        return 1
    print(table(ours, influx))
    report = {
        "benchmark": "influx",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": shlex.join([Path(sys.executable).name, "-m", "bench.influx", *argv]),
        "machine": machine(),
        "settings": {k: v for k, v in vars(args).items() if k not in ("json", "pg_admin")},
        "verified": "every acked sample is stored (rows counted), every point in InfluxDB",
        "runs": [asdict(side) for side in [*ours, influx]],
        "ours_over_influx": {
            side.system: round(side.samples_per_s / influx.samples_per_s, 3) for side in ours
        },
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"results: {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
