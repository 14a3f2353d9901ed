"""Run every benchmark: ``python -m bench`` (or ``make bench``).

    python -m bench                  # all of them, one after the other
    python -m bench --only ingest    # one of them
    python -m bench --list

Each benchmark writes its JSON into bench/results/. Benchmarks whose module
is not present in this checkout are skipped with a note. ``ingest`` runs on
SQLite and on PostgreSQL (a temporary database on 127.0.0.1:5432).
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"

# name -> (module, arguments for its main()).
BENCHMARKS: dict[str, tuple[str, list[str]]] = {
    "ingest": ("bench.ingest", []),
    "middleware": ("bench.middleware", ["--json", str(RESULTS / "middleware.json")]),
    "agent_overhead": ("bench.agent_overhead", []),
    "realtime": ("bench.realtime", []),
    "analytics": ("bench.analytics", []),
    # The same 30-day analytics straight from raw rows: what the rollups buy.
    "analytics_raw": ("bench.analytics", ["--raw-compare"]),
    # 100 concurrent HTTP requests (the seed's performance test); `make loadtest` is apart.
    "http_load": ("bench.http_load", []),
    # Against peers (issue 8); influx and collectd need `make bench-deps` (apt).
    "ingest_matrix": ("bench.ingest_matrix", []),
    "influx": ("bench.influx", []),
    "collectd": ("bench.collectd", []),
    "alert_latency": ("bench.alert_latency", []),
}


def _entry_point(module_name: str) -> Callable[[list[str]], Any] | None:
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise  # the benchmark exists but one of its imports is missing
        return None
    main: Callable[[list[str]], Any] = module.main
    return main


def run(name: str) -> bool:
    """Run one benchmark; False when it failed (a skipped one is not a failure)."""
    module_name, arguments = BENCHMARKS[name]
    main = _entry_point(module_name)
    if main is None:
        print(f"== {name}: skipped ({module_name} is not in this checkout)", flush=True)
        return True
    print(f"== {name}", flush=True)
    started = time.monotonic()
    try:
        status = main(arguments)
    except SystemExit as exc:  # argparse and friends
        status = exc.code
    ok = status in (None, 0)
    print(f"== {name}: {'done' if ok else 'FAILED'} in {time.monotonic() - started:.0f} s")
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--only", action="append", choices=sorted(BENCHMARKS), metavar="NAME")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    args = parser.parse_args(argv)
    if args.list:
        for name, (module_name, _) in BENCHMARKS.items():
            print(f"{name:<16} {module_name}")
        return 0
    RESULTS.mkdir(parents=True, exist_ok=True)
    failed = [name for name in args.only or list(BENCHMARKS) if not run(name)]
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
