"""Load test of the HTTP API with locust at a rising arrival rate (``make loadtest``).

    python -m bench.loadtest                      # SQLite in a temporary directory, ~3 min
    python -m bench.loadtest --db postgresql+psycopg://postgres@127.0.0.1:5432/dp_bench
    python -m bench.loadtest --step-s 10 --steps 8 --limited-s 0   # shorter

Fills ``--dealers`` dealers with ``--minutes`` of 10-second data up to now
(bench.http_load's fill, the real write path), starts the reporter as in
production (system clock, result cache on) on 127.0.0.1:0 in this process,
and runs locust headless (bench/locustfile.py) in a child process against
GET /api/ai/performance-monitoring, with a random dealer's token a request:

1. ``rising``: ``--first-users`` requests a second, ``--step-users`` more
   every ``--step-s`` seconds, ``--steps`` steps. The rate limiter is set out
   of the way (rate_limit_requests = 10**9 a token) so that the test measures
   latency, not the limiter. Per step: the arrival rate, p50/p95/p99 and
   failures, from locust's record of every request, and locust's own
   stats-history p95 at the end of the step (its 10-second window) as a cross
   check. Reported: the rate at which p95 first crosses 200 ms, or that it
   never did up to the highest rate tried.
2. ``limited`` (``--limited-s`` > 0): the default limiter (100 requests per
   token per 15 minutes) with ``--limited-users`` requests a second from the
   tokens of only ``--limited-dealers`` dealers, so that the limit is reached
   within the run: how many answers are 429 (with Retry-After) and how fast
   the refusals are.

CPU seconds of the reporter per request are recorded next to wall-clock
figures (the reporter is alone in this process; locust has its own). Results:
bench/results/loadtest.json. Needs locust (``pip install -e '.[loadtest]'``;
``make loadtest`` installs it on first use).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.http_load import ServerOptions, burst, fill_fleet, percentile, running_reporter
from collector.store import SQLAlchemyMetricStore, open_store

RESULTS = Path(__file__).resolve().parent / "results" / "loadtest.json"
LOCUSTFILE = Path(__file__).resolve().parent / "locustfile.py"
TARGET_P95_MS = 200.0
NO_LIMIT = 10**9
# Locust stops by itself when the shape ends; this bounds a hung run.
SLACK_S = 90.0


@dataclass(frozen=True, slots=True)
class Shape:
    first_users: int
    step_users: int
    step_s: float
    steps: int

    @property
    def duration_s(self) -> float:
        return self.step_s * self.steps

    def environment(self) -> dict[str, str]:
        return {
            "DP_LOAD_FIRST_USERS": str(self.first_users),
            "DP_LOAD_STEP_USERS": str(self.step_users),
            "DP_LOAD_STEP_S": str(self.step_s),
            "DP_LOAD_STEPS": str(self.steps),
        }


@dataclass(frozen=True, slots=True)
class Run:
    """What one locust run left: every request, locust's stats history, the reporter's CPU."""

    records: list[tuple[float, float, int, int]]
    history: list[dict[str, str]]
    server_cpu_s: float
    wall_s: float


def run_locust(
    store: SQLAlchemyMetricStore,
    options: ServerOptions,
    tokens: Mapping[str, str],
    shape: Shape,
    folder: Path,
    name: str,
) -> Run:
    tokens_file, records_file = folder / f"{name}-tokens.json", folder / f"{name}-records.json"
    tokens_file.write_text(json.dumps(dict(tokens)))
    environment = {
        **os.environ,
        **shape.environment(),
        "DP_LOAD_TOKENS": str(tokens_file),
        "DP_LOAD_RECORDS": str(records_file),
    }
    with running_reporter(store, options) as port:
        command = [
            sys.executable,
            "-m",
            "locust",
            "-f",
            str(LOCUSTFILE),
            "--headless",
            "--host",
            f"http://127.0.0.1:{port}",
            "--csv",
            str(folder / name),
            "--csv-full-history",
            "--only-summary",
            "--loglevel",
            "WARNING",
            "--exit-code-on-error",
            "0",
        ]
        # Every dealer asked once first: tokens checked and cached, as in a running system.
        asyncio.run(burst(port, tokens, len(tokens)))
        started, cpu = time.perf_counter(), time.process_time()
        with (folder / f"{name}-locust.log").open("w") as log:
            finished = subprocess.run(
                command,
                env=environment,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=shape.duration_s + SLACK_S,
                check=False,
            )
        wall_s, cpu_s = time.perf_counter() - started, time.process_time() - cpu
    if finished.returncode != 0:
        print((folder / f"{name}-locust.log").read_text(), file=sys.stderr)
        raise RuntimeError(f"locust failed with exit code {finished.returncode}")
    records = [(r[0], r[1], r[2], r[3]) for r in json.loads(records_file.read_text())]
    with (folder / f"{name}_stats_history.csv").open(newline="") as handle:
        history = [row for row in csv.DictReader(handle) if row["Name"] == "Aggregated"]
    return Run(records, history, cpu_s, wall_s)


def _latencies(records: list[tuple[float, float, int, int]]) -> dict[str, Any]:
    ordered = sorted(ms for _, ms, _, _ in records)
    ok = sum(1 for _, _, status, _ in records if status == 200)
    return {
        "requests": len(records),
        "ok_percent": round(100.0 * ok / len(records), 1),
        "p50_ms": round(statistics.median(ordered), 1),
        "p95_ms": round(percentile(ordered, 0.95), 1),
        "p99_ms": round(percentile(ordered, 0.99), 1),
    }


def steps_of(run: Run, shape: Shape) -> list[dict[str, Any]]:
    """Per step (user count): arrival rate, latencies, and locust's windowed p95 at its end."""
    found = []
    for step in range(shape.steps):
        users = shape.first_users + step * shape.step_users
        records = [r for r in run.records if r[3] == users]
        if not records:
            continue
        starts = [r[0] for r in records]
        # Requests started while the step ran, over the time it ran (a full step but the last).
        span_s = max(max(starts) - min(starts), 1.0)
        at_end = [row for row in run.history if row["User Count"] == str(users)]
        found.append(
            {
                "users": users,
                "rate_per_s": round(len(records) / span_s, 1),
                **_latencies(records),
                "locust_window_p95_ms": _int_or_none(at_end[-1]["95%"]) if at_end else None,
                "locust_window_rps": float(at_end[-1]["Requests/s"]) if at_end else None,
            }
        )
    return found


def _int_or_none(text: str) -> int | None:
    return int(float(text)) if text not in ("", "N/A") else None


def crossing(steps: list[dict[str, Any]]) -> dict[str, Any]:
    """The first step whose p95 is over the target, and the last one under it."""
    below = None
    for step in steps:
        if step["p95_ms"] >= TARGET_P95_MS:
            return {
                "crossed": True,
                "at_rate_per_s": step["rate_per_s"],
                "last_rate_under_per_s": below["rate_per_s"] if below else None,
                "p95_ms_there": step["p95_ms"],
            }
        below = step
    return {"crossed": False, "max_rate_tried_per_s": steps[-1]["rate_per_s"] if steps else None}


def rising(store: SQLAlchemyMetricStore, tokens: Mapping[str, str], args: Any, folder: Path) -> Any:
    shape = Shape(args.first_users, args.step_users, args.step_s, args.steps)
    load_before = os.getloadavg()[0]
    run = run_locust(store, ServerOptions(NO_LIMIT), tokens, shape, folder, "rising")
    steps = steps_of(run, shape)
    return {
        "rate_limiter": f"rate_limit_requests={NO_LIMIT} per token (out of the way)",
        "shape": {
            "first_users": shape.first_users,
            "step_users": shape.step_users,
            "step_s": shape.step_s,
            "steps": shape.steps,
            "pacing": "each user starts one request a second",
        },
        "steps": steps,
        "p95_crossing": crossing(steps),
        "overall": _latencies(run.records),
        "server_cpu_ms_per_request": round(1000 * run.server_cpu_s / len(run.records), 2),
        "wall_s": round(run.wall_s, 1),
        "load_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }


def limited(
    store: SQLAlchemyMetricStore, tokens: Mapping[str, str], args: Any, folder: Path
) -> Any:
    """The default limiter, a load from a few dealers' tokens that outruns it."""
    shape = Shape(args.limited_users, 0, args.limited_s, 1)
    few = dict(list(tokens.items())[: args.limited_dealers])
    options = ServerOptions()
    load_before = os.getloadavg()[0]
    run = run_locust(store, options, few, shape, folder, "limited")
    by_status: dict[str, list[tuple[float, float, int, int]]] = {}
    for record in run.records:
        by_status.setdefault(str(record[2]), []).append(record)
    return {
        "rate_limiter": (
            f"default: {options.rate_limit_requests} requests per token per "
            f"{options.rate_limit_window_s:g} s"
        ),
        "dealers": len(few),
        "users": args.limited_users,
        "seconds": args.limited_s,
        # The warm-up asked once with each token.
        "allowed_at_most": (options.rate_limit_requests - 1) * len(few),
        "by_status": {
            status: {k: v for k, v in _latencies(rs).items() if k != "ok_percent"}
            for status, rs in sorted(by_status.items())
        },
        "load_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }


def _print(result: dict[str, Any]) -> None:
    up = result["rising"]
    print(
        f"{result['backend']}: rising arrival rate, limiter out of the way ({up['rate_limiter']})"
    )
    print("  users  rate/s   ok %    p50     p95     p99 ms   locust-window p95")
    for s in up["steps"]:
        print(
            f"  {s['users']:5d}  {s['rate_per_s']:6.1f}  {s['ok_percent']:5.1f}  "
            f"{s['p50_ms']:6.1f}  {s['p95_ms']:6.1f}  {s['p99_ms']:6.1f}   "
            f"{s['locust_window_p95_ms']}"
        )
    cross = up["p95_crossing"]
    if cross["crossed"]:
        print(
            f"  p95 crossed {TARGET_P95_MS:g} ms at {cross['at_rate_per_s']} requests/s "
            f"(last step under it: {cross['last_rate_under_per_s']} requests/s)"
        )
    else:
        print(f"  p95 never crossed {TARGET_P95_MS:g} ms up to {cross['max_rate_tried_per_s']} /s")
    print(
        f"  reporter CPU {up['server_cpu_ms_per_request']} ms a request; "
        f"load average {up['load_1m'][0]} -> {up['load_1m'][1]} on {os.cpu_count()} CPUs"
    )
    if "limited" in result:
        lim = result["limited"]
        print(
            f"  with the limiter on ({lim['rate_limiter']}), {lim['users']} requests/s from "
            f"{lim['dealers']} dealers for {lim['seconds']:g} s:"
        )
        for status, figures in lim["by_status"].items():
            print(f"    HTTP {status}: {figures['requests']} answers, p95 {figures['p95_ms']} ms")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.loadtest",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--db", help="database URL (default: SQLite in a temporary directory)")
    parser.add_argument("--dealers", type=int, default=100)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--endpoints", type=int, default=10)
    parser.add_argument("--first-users", type=int, default=5)
    parser.add_argument("--step-users", type=int, default=5)
    parser.add_argument("--step-s", type=float, default=12.0)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--limited-users", type=int, default=20)
    parser.add_argument("--limited-s", type=float, default=20.0, help="0: skip that part")
    parser.add_argument("--limited-dealers", type=int, default=2)
    parser.add_argument("--json", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="dp-loadtest-") as tmp:
        folder = Path(tmp)
        url = args.db or f"sqlite:///{folder}/loadtest.db"
        store = open_store(url)
        try:
            started = time.perf_counter()
            tokens = fill_fleet(store, args.dealers, args.minutes, args.endpoints)
            print(f"filled {args.dealers} dealers in {time.perf_counter() - started:.0f} s")
            result: dict[str, Any] = {
                "backend": url.split(":", 1)[0].split("+")[0],
                "path": "/api/ai/performance-monitoring",
                "dealers": args.dealers,
                "rising": rising(store, tokens, args, folder),
            }
            if args.limited_s > 0:
                result["limited"] = limited(store, tokens, args, folder)
        finally:
            store.close()
    result["cpus"] = os.cpu_count()
    _print(result)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
