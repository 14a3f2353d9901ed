"""Analytics benchmark: read_analytics over 30 days for one dealer, and the rollup job's speed.

    python -m bench --only analytics
    python -m bench.analytics --dealers 100 --endpoints 10 --days 30 --runs 40

Data, stated in the output as well:

- the bulk is generated as rollup rows directly (30 days x ``--dealers``:
  1-hour endpoint rollups with latency sketches for ``--endpoints``
  endpoints, plus the agent's ``*`` row per hour and the 1-day rows, summed
  by the rollup job's own code; 1-hour metric rollups for the host series
  the reporter reads).
  Writing 30 days of raw 10-second data for 100 dealers (about 2.6 billion
  samples) would take hours on this machine; the rollup rows are what
  read_analytics reads, and they are what the job would have produced.
- 1-minute rollups for the last 24 h of ``--minute-dealers`` dealers (the
  24 h query reads those).
- raw 10-second data (samples and endpoint statistics) of ``--raw-dealers``
  dealers over ``--raw-hours``, written through ``write_batches`` (so with
  dirty marks), then rolled up by the real job: rows rolled up per second.

Timed: ``read_analytics`` for a random dealer (30 d at the default 1 h step,
and 24 h at 5 min), ``--runs`` times after warm-up, p50/p95/max; once for all
dealers together. SQLite (temporary file) and PostgreSQL (temporary database
on 127.0.0.1:5432, skipped if unreachable). Results: bench/results/analytics.json.

``--raw-compare`` (``python -m bench --only analytics_raw``) measures what the
rollups buy instead: besides the ``--dealers`` of generated rollups,
``--raw-compare-dealers`` (1) dealers get ``--days`` of raw 10-second data
(``--endpoints`` api_performance rows and the host samples per interval,
~2.6 M + ~4.4 M rows a dealer for 30 days, bulk inserted) and the rollups of
that same data; then read_analytics (rollups, ``--runs`` times) against the
same figures computed from the raw rows (bench.raw_analytics, ``--raw-runs``
times: a run takes tens of seconds), the ratio, and a sanity check that both
give the same requests, errors, p95 and per-hour p95 (the exit status is 1
when the totals differ). Results: bench/results/analytics_raw.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Engine, insert, select

from bench.store_write import DEFAULT_PG_ADMIN, database_urls
from collector.rollup.bins import Bins, decode, encode
from collector.rollup.compute import ALL_TRAFFIC, EndpointTotals
from collector.rollup.rollups import RollupRunner
from collector.store import SQLAlchemyMetricStore, open_store
from collector.store.schema import (
    agents,
    dealers,
    endpoint_rollup_1d,
    endpoint_rollup_1h,
    endpoint_rollup_1m,
    series,
)
from collector.store.series import labels_key
from dealerpulse.clock import to_unix_ms
from dealerpulse.model import EndpointStat, MetricBatch, Sample, labels_of
from dealerpulse.sketch import DDSketch
from reporter.model import TimeRange, step_for
from reporter.queries import read_analytics

RESULTS = Path(__file__).resolve().parent / "results" / "analytics.json"
RAW_RESULTS = RESULTS.with_name("analytics_raw.json")
DAY_MS = 86_400_000
HOUR_MS = 3_600_000
MINUTE_MS = 60_000
HOST_SERIES: list[tuple[str, str, dict[str, str]]] = [
    ("cpu.percent", "percent", {}),
    ("memory.percent", "percent", {}),
    ("memory.used_bytes", "bytes", {}),
    ("memory.total_bytes", "bytes", {}),
    ("memory.available_bytes", "bytes", {}),
    *[
        (name, unit, {"mount": mount})
        for mount in ("/", "/data")
        for name, unit in (
            ("disk.used_percent", "percent"),
            ("disk.used_bytes", "bytes"),
            ("disk.total_bytes", "bytes"),
            ("disk.free_bytes", "bytes"),
        )
    ],
    ("net.recv_percent", "percent", {"nic": "eth0"}),
    ("net.sent_percent", "percent", {"nic": "eth0"}),
]


def _sketch_pool(size: int, seed: int) -> list[tuple[bytes, int, float, float, float]]:
    """(encoded sketch, count, sum, min, max) of an hour of one endpoint's latencies."""
    rng = random.Random(seed)
    pool = []
    for _ in range(size):
        values = [rng.lognormvariate(4.0, 0.6) for _ in range(rng.randint(200, 600))]
        model = DDSketch.of(values).to_model()
        bins = Bins(model.relative_accuracy, model.offset, np.asarray(model.bin_counts, np.uint64))
        pool.append((encode(bins), len(values), sum(values), min(values), max(values)))
    return pool


def _generate_bulk(engine: Engine, args: argparse.Namespace, end_ms: int) -> dict[str, int]:
    """Dealers, agents, series and 1-hour rollup rows written directly."""
    pool = _sketch_pool(64, seed=1)
    hours = args.days * 24
    first_hour = end_ms - end_ms % HOUR_MS - (hours - 1) * HOUR_MS
    now = datetime.now(UTC)
    counts = {"endpoint_rollup_1h": 0, "endpoint_rollup_1d": 0, "endpoint_rollup_1m": 0}
    routes = [f"/api/route{i}" for i in range(args.endpoints)]
    with engine.begin() as connection:
        connection.execute(
            insert(dealers),
            [
                {"dealer_id": f"dealer-{d:03d}", "name": f"Dealer {d}", "created_at": now}
                for d in range(args.dealers)
            ],
        )
        connection.execute(
            insert(agents),
            [_agent_row(d, now) for d in range(args.dealers)],
        )
        connection.execute(
            insert(series),
            [
                {
                    "dealer_id": f"dealer-{d:03d}",
                    "agent_id": f"agent-{d:03d}",
                    "name": name,
                    "metric_type": name.split(".")[0],
                    "unit": unit,
                    "labels": labels,
                    "labels_key": labels_key(labels_of(labels)),
                }
                for d in range(args.dealers)
                for name, unit, labels in HOST_SERIES
            ],
        )
        ids = list(connection.execute(select(series.c.id, series.c.dealer_id)))
    rng = random.Random(2)
    for dealer in range(args.dealers):
        dealer_id = f"dealer-{dealer:03d}"
        endpoint_rows = []
        for hour in range(hours):
            bucket = first_hour + hour * HOUR_MS
            for route in routes:
                blob, count, total, low, high = pool[rng.randrange(len(pool))]
                endpoint_rows.append(
                    _endpoint_row(
                        dealer_id,
                        f"agent-{dealer:03d}",
                        route,
                        bucket,
                        blob,
                        count,
                        total,
                        low,
                        high,
                    )
                )
        endpoint_rows += _summed(endpoint_rows, _all_traffic)
        _copy_rows(engine, endpoint_rollup_1h, endpoint_rows)
        counts["endpoint_rollup_1h"] += len(endpoint_rows)
        day_rows = _summed(endpoint_rows, _per_day)
        _copy_rows(engine, endpoint_rollup_1d, day_rows)
        counts["endpoint_rollup_1d"] += len(day_rows)
        if dealer < args.minute_dealers:
            minute_rows = _minute_rows(dealer_id, dealer, routes, end_ms, pool, rng)
            minute_rows += _summed(minute_rows, _all_traffic)
            _copy_rows(engine, endpoint_rollup_1m, minute_rows)
            counts["endpoint_rollup_1m"] += len(minute_rows)
    counts["metric_rollup_1h"] = _metric_rows(engine, [r.id for r in ids], first_hour, hours)
    counts["metric_rollup_1m"] = _metric_rows(
        engine,
        [r.id for r in ids if int(r.dealer_id[-3:]) < args.minute_dealers],
        end_ms - end_ms % MINUTE_MS - 1439 * MINUTE_MS,
        1440,
        size_ms=MINUTE_MS,
        table="metric_rollup_1m",
    )
    return counts


EndpointKey = tuple[str, str, str, int]


def _all_traffic(row: tuple[Any, ...]) -> EndpointKey:
    return ALL_TRAFFIC, ALL_TRAFFIC, ALL_TRAFFIC, row[1]


def _per_day(row: tuple[Any, ...]) -> EndpointKey:
    return row[3], row[4], row[5], row[1] - row[1] % DAY_MS


def _summed(rows: list[tuple[Any, ...]], key_of: Any) -> list[tuple[Any, ...]]:
    """Rows of one agent summed per key, as the rollup job sums them (same code)."""
    totals: dict[EndpointKey, EndpointTotals] = {}
    for row in rows:
        totals.setdefault(key_of(row), EndpointTotals()).add(
            row[6],
            row[7],
            row[8],
            (row[9], row[10], row[11]),
            (row[13], row[14]),
            decode(row[12]) if row[12] is not None else None,
        )
    dealer_id, agent_id = rows[0][0], rows[0][2]
    return [tuple(t.row(dealer_id, agent_id, key).values()) for key, t in sorted(totals.items())]


def _agent_row(dealer: int, now: datetime) -> dict[str, Any]:
    return {
        "agent_id": f"agent-{dealer:03d}",
        "dealer_id": f"dealer-{dealer:03d}",
        "hostname": f"dms-{dealer:03d}",
        "version": "bench",
        "boot_id": "bench",
        "first_seen": now,
        "last_seen": now,
        "dropped_samples": {},
    }


def _endpoint_row(
    dealer_id: str,
    agent_id: str,
    route: str,
    bucket: int,
    blob: bytes,
    count: int,
    total: float,
    low: float,
    high: float,
) -> tuple[Any, ...]:
    errors = count // 100
    return (
        dealer_id,
        bucket,
        agent_id,
        "",
        "GET",
        route,
        count,
        errors,
        0,
        total,
        low,
        high,
        blob,
        "",
        None,
    )


def _minute_rows(
    dealer_id: str, dealer: int, routes: list[str], end_ms: int, pool: list[Any], rng: random.Random
) -> list[tuple[Any, ...]]:
    first = end_ms - end_ms % MINUTE_MS - 1439 * MINUTE_MS
    rows = []
    for minute in range(1440):
        for route in routes:
            blob, count, total, low, high = pool[rng.randrange(len(pool))]
            rows.append(
                _endpoint_row(
                    dealer_id,
                    f"agent-{dealer:03d}",
                    route,
                    first + minute * MINUTE_MS,
                    blob,
                    count,
                    total,
                    low,
                    high,
                )
            )
    return rows


def _copy_rows(
    engine: Engine, table: Any, rows: list[tuple[Any, ...]], columns: list[str] | None = None
) -> None:
    """Bulk insert (COPY on PostgreSQL); ``columns``: the rows' columns, default all."""
    columns = columns or [c.name for c in table.columns]
    with engine.begin() as connection:
        raw: Any = connection.connection.driver_connection
        if engine.dialect.name == "postgresql":
            with (
                raw.cursor() as cursor,
                cursor.copy(f"COPY {table.name} ({', '.join(columns)}) FROM STDIN") as copy,
            ):
                for row in rows:
                    copy.write_row(row)
        else:
            marks = ", ".join("?" * len(columns))
            cursor = raw.cursor()
            cursor.executemany(
                f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({marks})", rows
            )
            cursor.close()


def _metric_rows(
    engine: Engine,
    ids: list[int],
    first: int,
    buckets: int,
    size_ms: int = HOUR_MS,
    table: str = "metric_rollup_1h",
) -> int:
    rng = np.random.default_rng(3)
    total = 0
    for start in range(0, len(ids), 50):
        rows = []
        for series_id in ids[start : start + 50]:
            values = rng.uniform(10, 90, buckets)
            for index in range(buckets):
                v = float(values[index])
                n = size_ms // 10_000
                rows.append((series_id, first + index * size_ms, n, v * n, v - 5, v + 5, v))
        _copy_rows(engine, _metric_table(table), rows)
        total += len(rows)
    return total


def _metric_table(name: str) -> Any:
    from collector.store import schema

    return getattr(schema, name)


def _raw_batches(args: argparse.Namespace, end_ms: int) -> list[MetricBatch]:
    """--raw-hours of 10 s data for the first --raw-dealers dealers, one batch per minute."""
    start = end_ms - end_ms % MINUTE_MS - args.raw_hours * HOUR_MS
    rng = random.Random(4)
    built = []
    routes = [f"/api/route{i}" for i in range(args.endpoints)]
    for dealer in range(args.raw_dealers):
        for minute in range(args.raw_hours * 60):
            at_minute = start + minute * MINUTE_MS
            points = tuple(
                Sample(
                    name, rng.uniform(0, 100), unit, at_minute + tick * 10_000, labels_of(labels)
                )
                for tick in range(6)
                for name, unit, labels in HOST_SERIES
            )
            stats = tuple(
                _stat(route, at_minute + tick * 10_000, rng)
                for tick in range(1, 7)
                for route in routes
            )
            built.append(
                MetricBatch(
                    agent_id=f"raw-agent-{dealer:03d}",
                    dealer_id=f"dealer-{dealer:03d}",
                    seq=minute + 1,
                    boot_id="bench",
                    hostname="raw",
                    agent_version="bench",
                    created_ms=at_minute,
                    samples=points,
                    endpoints=stats,
                    digest=f"{dealer}/{minute}".encode(),
                )
            )
    return built


def _stat(route: str, end_ms: int, rng: random.Random) -> EndpointStat:
    values = [rng.lognormvariate(4.0, 0.6) for _ in range(rng.randint(3, 12))]
    return EndpointStat(
        route=route,
        method="GET",
        start_ms=end_ms - 10_000,
        end_ms=end_ms,
        count=len(values),
        duration_sum_ms=sum(values),
        duration_min_ms=min(values),
        duration_max_ms=max(values),
        latency=DDSketch.of(values).to_model(),
    )


def _timed(runs: int, call: Any, warmup: int = 3) -> dict[str, Any]:
    """Wall time, and this process's CPU time: the machine is shared, and the CPU
    time of a run does not grow with the load (on SQLite it is nearly all the work;
    PostgreSQL's own work is in its server processes)."""
    for _ in range(warmup):
        call()
    wall_ms, cpu_ms = [], []
    load_before = os.getloadavg()[0]
    for _ in range(runs):
        started, cpu = time.perf_counter(), time.process_time()
        call()
        wall_ms.append((time.perf_counter() - started) * 1000)
        cpu_ms.append((time.process_time() - cpu) * 1000)
    ordered, cpu_ordered = sorted(wall_ms), sorted(cpu_ms)
    p95 = min(len(ordered) - 1, int(0.95 * len(ordered)))
    return {
        "p50_ms": round(statistics.median(ordered), 1),
        "p95_ms": round(ordered[p95], 1),
        "max_ms": round(ordered[-1], 1),
        "cpu_p50_ms": round(statistics.median(cpu_ordered), 1),
        "cpu_p95_ms": round(cpu_ordered[p95], 1),
        "runs": runs,
        "load_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }


def bench_url(url: str, args: argparse.Namespace) -> dict[str, Any]:
    store: SQLAlchemyMetricStore = open_store(url)
    try:
        now = datetime.now(UTC)
        end_ms = to_unix_ms(now)
        started = time.perf_counter()
        generated = _generate_bulk(store.engine, args, end_ms)
        generate_s = time.perf_counter() - started
        raw = _raw_batches(args, end_ms)
        raw_samples = sum(len(b.samples) for b in raw)
        raw_endpoints = sum(len(b.endpoints) for b in raw)
        for first in range(0, len(raw), 60):
            store.write_batches(raw[first : first + 60], now)
        started = time.perf_counter()
        report = RollupRunner(store.engine).run(now)
        rollup_s = time.perf_counter() - started
        rng = random.Random(5)
        month = TimeRange(now - timedelta(days=args.days), now)
        day = TimeRange(now - timedelta(days=1), now)
        dealers = [f"dealer-{d:03d}" for d in range(args.dealers)]
        minute_dealers = dealers[: args.minute_dealers]
        result: dict[str, Any] = {
            "backend": store.dialect,
            "data": {
                "dealers": args.dealers,
                "endpoints_per_dealer": args.endpoints,
                "days": args.days,
                "bulk": "rollup rows generated directly (not rolled up from raw data)",
                "rows": generated,
                "generate_s": round(generate_s, 1),
            },
            "rollup_job": {
                "raw_dealers": args.raw_dealers,
                "raw_hours": args.raw_hours,
                "samples": raw_samples,
                "endpoint_rows": raw_endpoints,
                "marks": report.marks,
                "seconds": round(rollup_s, 2),
                "rows_per_s": round((raw_samples + raw_endpoints) / rollup_s),
            },
            "analytics_30d_one_dealer": _timed(
                args.runs, lambda: read_analytics(store.engine, rng.choice(dealers), month)
            ),
            "analytics_24h_one_dealer_5min": _timed(
                args.runs, lambda: read_analytics(store.engine, rng.choice(minute_dealers), day)
            ),
            "analytics_30d_all_dealers": _timed(
                1, lambda: read_analytics(store.engine, None, month), warmup=0
            ),
        }
        result["target_met"] = result["analytics_30d_one_dealer"]["p95_ms"] < 200
        return result
    finally:
        store.close()


def bench_raw_url(url: str, args: argparse.Namespace) -> dict[str, Any]:
    """read_analytics (rollups) against the same figures from raw rows, one dealer, 30 days."""
    from bench.raw_analytics import compare, month_range, raw_analytics, write_raw_dealer

    store: SQLAlchemyMetricStore = open_store(url)
    try:
        now = datetime.now(UTC)
        month = month_range(now, args.days)
        started = time.perf_counter()
        bulk = _generate_bulk(store.engine, args, to_unix_ms(now)) if args.dealers else {}
        bulk_s = time.perf_counter() - started
        raw_ids = [f"raw-{r:03d}" for r in range(args.raw_compare_dealers)]
        started = time.perf_counter()
        written: dict[str, int] = {}
        for r, dealer_id in enumerate(raw_ids):
            for table, rows in write_raw_dealer(
                store.engine, dealer_id, month, args.endpoints, seed=10 + r
            ).items():
                written[table] = written.get(table, 0) + rows
        write_s = time.perf_counter() - started
        rng = random.Random(6)
        rollup = _timed(args.runs, lambda: read_analytics(store.engine, rng.choice(raw_ids), month))
        # No warm-up (a raw run takes tens of seconds); the last run's answer is checked.
        answers: list[dict[str, Any]] = []
        raw = _timed(
            args.raw_runs,
            lambda: answers.append(raw_analytics(store.engine, raw_ids[-1], month)),
            warmup=0,
        )
        check = compare(read_analytics(store.engine, raw_ids[-1], month), answers[-1])
    finally:
        store.close()
    return {
        "backend": store.dialect,
        "data": {
            "raw_dealers": len(raw_ids),
            "days": args.days,
            "endpoints_per_dealer": args.endpoints,
            "raw_interval_s": 10,
            "host_series_per_dealer": len(HOST_SERIES),
            "raw_rows_written": written,
            "raw_write_s": round(write_s, 1),
            "other_dealers_rollup_rows": bulk,
            "other_dealers_generate_s": round(bulk_s, 1),
        },
        "rollup_read_analytics_30d": rollup,
        "raw_rows_30d": raw,
        "ratio_p50": round(raw["p50_ms"] / rollup["p50_ms"], 1),
        "ratio_p95": round(raw["p95_ms"] / rollup["p95_ms"], 1),
        "ratio_cpu_p50": round(raw["cpu_p50_ms"] / max(rollup["cpu_p50_ms"], 0.1), 1),
        "sanity": check,
    }


def _print_raw(result: dict[str, Any]) -> None:
    rollup, raw = result["rollup_read_analytics_30d"], result["raw_rows_30d"]
    rows = result["data"]["raw_rows_written"]
    print(
        f"{result['backend']}: one dealer, {result['data']['days']} days of 10 s data "
        f"({rows['api_performance']:,} api_performance rows, {rows['samples']:,} samples a "
        f"dealer x {result['data']['raw_dealers']}; written in {result['data']['raw_write_s']} s)"
    )
    print(
        f"  rollups  p50 {rollup['p50_ms']:9.1f}  p95 {rollup['p95_ms']:9.1f} ms  "
        f"CPU p50 {rollup['cpu_p50_ms']:.1f} ms  ({rollup['runs']} runs, load {rollup['load_1m']})"
    )
    print(
        f"  raw rows p50 {raw['p50_ms']:9.1f}  p95 {raw['p95_ms']:9.1f} ms  "
        f"CPU p50 {raw['cpu_p50_ms']:.1f} ms  ({raw['runs']} runs, load {raw['load_1m']})"
    )
    sanity = result["sanity"]
    print(
        f"  raw / rollup: {result['ratio_p50']}x at p50, {result['ratio_p95']}x at p95; "
        f"same totals {sanity['same_totals']} (requests {sanity['requests']}, errors "
        f"{sanity['errors']}), same p95 {sanity['same_p95']}, same per-step p95 "
        f"{sanity['same_step_p95']}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.analytics",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--db", action="append", help="database URL (repeatable)")
    parser.add_argument("--dealers", type=int, default=100)
    parser.add_argument("--endpoints", type=int, default=10)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--minute-dealers", type=int, default=5)
    parser.add_argument("--raw-dealers", type=int, default=3)
    parser.add_argument("--raw-hours", type=int, default=2)
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--pg-admin", default=DEFAULT_PG_ADMIN)
    parser.add_argument(
        "--raw-compare",
        action="store_true",
        help="only the rollups-against-raw-rows comparison (bench.raw_analytics)",
    )
    parser.add_argument("--raw-compare-dealers", type=int, default=1)
    parser.add_argument("--raw-runs", type=int, default=1)
    parser.add_argument("--json", type=Path, help=f"default {RESULTS} ({RAW_RESULTS.name})")
    args = parser.parse_args(argv)
    if args.raw_compare:
        # The comparison writes the raw dealer's 1-hour rollups only: a range whose
        # series step is finer (2 days or less) would read 1-minute rollups it lacks.
        if step_for(timedelta(days=args.days)) < timedelta(hours=1):
            parser.error(f"--raw-compare needs --days >= 3 (hourly steps), not {args.days}")
        return _main_raw(args)
    args.json = args.json or RESULTS
    print(
        f"{args.dealers} dealers x {args.endpoints} endpoints x {args.days} days; "
        "bulk generated as rollup rows directly; raw 10 s data for "
        f"{args.raw_dealers} dealers x {args.raw_hours} h rolled up by the job"
    )
    results = []
    with contextlib.ExitStack() as stack:
        urls = database_urls(stack, args.db, args.pg_admin, "analytics.db")
        for url in urls:
            result = bench_url(url, args)
            results.append(result)
            print(json.dumps(result), flush=True)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0 if all(r["target_met"] for r in results) else 1


def _main_raw(args: argparse.Namespace) -> int:
    results = []
    with contextlib.ExitStack() as stack:
        urls = database_urls(stack, args.db, args.pg_admin, "analytics_raw.db")
        for url in urls:
            result = bench_raw_url(url, args)
            results.append(result)
            _print_raw(result)
    target = args.json or RAW_RESULTS
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(results, indent=2) + "\n")
    return 0 if all(r["sanity"]["same_totals"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
