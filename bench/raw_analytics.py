"""What rollups buy: one dealer's 30-day analytics straight from raw rows, against read_analytics.

Used by ``python -m bench.analytics --raw-compare`` (``python -m bench --only
analytics_raw``); bench code only, the reporter never reads raw rows for a range.

Data (per raw dealer, stated in the output): 10-second raw data over
``days`` whole hours up to the current hour: ``endpoints`` api_performance
rows per interval (counts, durations, a JSON latency sketch of 3-12
requests) and a sample per interval for each host series of
bench.analytics.HOST_SERIES, written with bulk inserts (COPY on PostgreSQL,
executemany on SQLite), not through the gRPC path. The same data's 1-hour and
1-day endpoint rollups (``*`` rows included) and 1-hour metric rollups are
computed here with numpy and the rollup job's own summing code, so that
read_analytics reads exactly what the job would have written.

:func:`raw_analytics` computes what read_analytics answers for one dealer at
the 1-hour step (totals, per-step and per-endpoint figures, p50/p95/p99 from
the merged sketches, resource averages and peaks) from the raw rows: sums
grouped per endpoint and hour in SQL, the JSON sketches merged in numpy (the
bins kept between 0.01 ms and 1000 s; outside values are clipped into the
edge bins, none here).
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import Engine, insert, select, text

from bench.analytics import (
    HOST_SERIES,
    _agent_row,
    _all_traffic,
    _copy_rows,
    _endpoint_row,
    _per_day,
    _summed,
)
from collector.rollup.bins import Bins, MergedBins, encode
from collector.store.schema import (
    agents,
    api_performance,
    dealers,
    endpoint_rollup_1d,
    endpoint_rollup_1h,
    metric_rollup_1h,
    samples,
    series,
)
from collector.store.series import labels_key
from dealerpulse.clock import from_unix_ms
from dealerpulse.model import labels_of
from dealerpulse.sketch import DDSketch
from reporter.model import AnalyticsData, TimeRange

INTERVAL_MS = 10_000
HOUR_MS = 3_600_000
PER_HOUR = HOUR_MS // INTERVAL_MS
POOL = 64
ACCURACY = 0.01
GAMMA = (1 + ACCURACY) / (1 - ACCURACY)
# Bins of the merge: 0.01 ms .. 1000 s.
LOW_BIN = math.ceil(math.log(0.01) / math.log(GAMMA))
HIGH_BIN = math.ceil(math.log(1e6) / math.log(GAMMA))
WIDTH = HIGH_BIN - LOW_BIN + 1
Floats = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class _Pool:
    """Endpoint statistics of one 10 s interval, chosen from at random per row."""

    count: npt.NDArray[np.int64]
    errors: npt.NDArray[np.int64]
    total: Floats
    low: Floats
    high: Floats
    sketch_json: list[str]
    bins: Floats  # POOL x WIDTH, from LOW_BIN


def _pool(seed: int) -> _Pool:
    rng = random.Random(seed)
    rows = []
    bins = np.zeros((POOL, WIDTH))
    for k in range(POOL):
        values = [rng.lognormvariate(4.0, 0.6) for _ in range(rng.randint(3, 12))]
        model = DDSketch.of(values).to_model()
        start = model.offset - LOW_BIN
        bins[k, start : start + len(model.bin_counts)] = model.bin_counts
        document: dict[str, Any] = {"ra": model.relative_accuracy, "offset": model.offset}
        document |= {"bins": list(model.bin_counts), "zero": model.zero_count}
        rows.append((len(values), int(rng.random() < 0.2), values, json.dumps(document)))
    return _Pool(
        count=np.asarray([r[0] for r in rows], np.int64),
        errors=np.asarray([r[1] for r in rows], np.int64),
        total=np.asarray([sum(r[2]) for r in rows]),
        low=np.asarray([min(r[2]) for r in rows]),
        high=np.asarray([max(r[2]) for r in rows]),
        sketch_json=[r[3] for r in rows],
        bins=bins,
    )


def month_range(now: datetime, days: int) -> TimeRange:
    """``days`` whole hours up to the start of the current hour (720 steps for 30 days)."""
    end = now.replace(minute=0, second=0, microsecond=0)
    return TimeRange(end - timedelta(days=days), end)


# ---- writing


def write_raw_dealer(
    engine: Engine, dealer_id: str, time_range: TimeRange, endpoints: int, seed: int
) -> dict[str, int]:
    """Raw rows of one dealer over ``time_range`` and the rollups of the same data."""
    pool = _pool(seed)
    agent_id = f"{dealer_id}-agent"
    first_ms = int(time_range.start.timestamp() * 1000)
    hours = int(time_range.duration / timedelta(hours=1))
    routes = [f"/api/route{e}" for e in range(endpoints)]
    rng = np.random.default_rng(seed)
    # picks[hour, tick, endpoint]: which pool entry each raw row is.
    picks = rng.integers(0, POOL, size=(hours, PER_HOUR, endpoints))
    series_ids = _register(engine, dealer_id, agent_id, time_range.start)
    api_rows = 0
    for day_hours in _chunks(hours, 24):
        api_rows += _write_api_rows(
            engine, (dealer_id, agent_id), routes, pool, picks, first_ms, day_hours
        )
    counts = {"api_performance": api_rows}
    counts |= _write_samples(engine, series_ids, first_ms, hours, rng)
    counts |= _write_endpoint_rollups(engine, dealer_id, agent_id, routes, pool, picks, first_ms)
    return counts


def _chunks(total: int, size: int) -> Iterator[range]:
    for start in range(0, total, size):
        yield range(start, min(total, start + size))


def _register(engine: Engine, dealer_id: str, agent_id: str, at: datetime) -> list[int]:
    with engine.begin() as connection:
        dealer = {"dealer_id": dealer_id, "name": dealer_id, "created_at": at}
        connection.execute(insert(dealers), [dealer])
        agent = _agent_row(0, at) | {"agent_id": agent_id, "dealer_id": dealer_id}
        connection.execute(insert(agents), [agent])
        connection.execute(
            insert(series),
            [
                {
                    "dealer_id": dealer_id,
                    "agent_id": agent_id,
                    "name": name,
                    "metric_type": name.split(".")[0],
                    "unit": unit,
                    "labels": labels,
                    "labels_key": labels_key(labels_of(labels)),
                }
                for name, unit, labels in HOST_SERIES
            ],
        )
        found = connection.scalars(
            select(series.c.id).where(series.c.dealer_id == dealer_id).order_by(series.c.id)
        )
        return list(found)


def _when(engine: Engine, ms: int) -> Any:
    """A UtcDateTime column's value as the bulk path writes it (SQLite keeps SQLAlchemy's text)."""
    moment = from_unix_ms(ms)
    if engine.dialect.name == "sqlite":
        return moment.strftime("%Y-%m-%d %H:%M:%S.%f")
    return moment


API_COLUMNS = [c.name for c in api_performance.columns if c.name != "id"]


def _write_api_rows(
    engine: Engine,
    owner: tuple[str, str],
    routes: list[str],
    pool: _Pool,
    picks: npt.NDArray[np.int64],
    first_ms: int,
    hours: range,
) -> int:
    """The api_performance rows of ``hours`` (one COPY / executemany)."""
    dealer_id, agent_id = owner
    tails = _row_tails(pool)
    rows = []
    for hour in hours:
        chosen = picks[hour].tolist()
        for tick in range(PER_HOUR):
            at_ms = first_ms + hour * HOUR_MS + tick * INTERVAL_MS
            head = (_when(engine, at_ms), _when(engine, at_ms - INTERVAL_MS), dealer_id, agent_id)
            rows += [
                (*head, route, "GET", *tails[k])
                for route, k in zip(routes, chosen[tick], strict=True)
            ]
    _copy_rows(engine, api_performance, rows, API_COLUMNS)
    return len(rows)


def _row_tails(pool: _Pool) -> list[tuple[Any, ...]]:
    """The api_performance columns after ``method`` of each pool entry, made once."""
    tails = []
    for k in range(POOL):
        count, errors = int(pool.count[k]), int(pool.errors[k])
        total = float(pool.total[k])
        tails.append(
            (
                count,
                errors,
                0,
                total,
                float(pool.low[k]),
                float(pool.high[k]),
                total / count,
                100.0 * (count - errors) / count,
                json.dumps({"200": count - errors, "500": errors}),
                "",
                None,
                "middleware",
                pool.sketch_json[k],
            )
        )
    return tails


def _write_samples(
    engine: Engine, series_ids: list[int], first_ms: int, hours: int, rng: np.random.Generator
) -> dict[str, int]:
    ticks = hours * PER_HOUR
    times = first_ms + INTERVAL_MS * np.arange(ticks, dtype=np.int64)
    sample_rows = 0
    rollup_rows = []
    for series_id in series_ids:
        values = rng.uniform(10, 90, ticks)
        rows = list(zip([series_id] * ticks, times.tolist(), values.tolist(), strict=True))
        _copy_rows(engine, samples, rows, ["series_id", "time_ms", "value"])
        sample_rows += len(rows)
        per_hour = values.reshape(hours, PER_HOUR)
        for hour in range(hours):
            v = per_hour[hour]
            rollup_rows.append(
                (
                    series_id,
                    first_ms + hour * HOUR_MS,
                    PER_HOUR,
                    float(v.sum()),
                    float(v.min()),
                    float(v.max()),
                    float(v[-1]),
                )
            )
    _copy_rows(engine, metric_rollup_1h, rollup_rows)
    return {"samples": sample_rows, "metric_rollup_1h": len(rollup_rows)}


def _write_endpoint_rollups(
    engine: Engine,
    dealer_id: str,
    agent_id: str,
    routes: list[str],
    pool: _Pool,
    picks: npt.NDArray[np.int64],
    first_ms: int,
) -> dict[str, int]:
    """1-hour rows per endpoint from the picks (sums and merged bins in numpy), then the
    ``*`` rows and 1-day rows summed by the rollup job's code."""
    hours, _, endpoints = picks.shape
    # uses[hour * endpoints + e, k]: how often pool entry k is a row of (hour, endpoint).
    groups = (np.arange(hours)[:, None, None] * endpoints + np.arange(endpoints)).repeat(
        PER_HOUR, axis=1
    )
    uses = np.bincount((groups * POOL + picks).ravel(), minlength=hours * endpoints * POOL).reshape(
        hours * endpoints, POOL
    )
    merged = uses @ pool.bins
    requests, errors, total = uses @ pool.count, uses @ pool.errors, uses @ pool.total
    chosen = picks.transpose(0, 2, 1).reshape(hours * endpoints, PER_HOUR)
    low, high = pool.low[chosen].min(axis=1), pool.high[chosen].max(axis=1)
    rows = []
    for g in range(hours * endpoints):
        hour, e = divmod(g, endpoints)
        blob = encode(Bins(ACCURACY, LOW_BIN, np.rint(merged[g]).astype(np.uint64)))
        row = _endpoint_row(
            dealer_id,
            agent_id,
            routes[e],
            first_ms + hour * HOUR_MS,
            blob,
            int(requests[g]),
            float(total[g]),
            float(low[g]),
            float(high[g]),
        )
        # The job keeps the raw rows' source and their errors.
        rows.append((*row[:3], "middleware", *row[4:7], int(errors[g]), *row[8:]))
    rows += _summed(rows, _all_traffic)
    _copy_rows(engine, endpoint_rollup_1h, rows)
    day_rows = _summed(rows, _per_day)
    _copy_rows(engine, endpoint_rollup_1d, day_rows)
    return {"endpoint_rollup_1h": len(rows), "endpoint_rollup_1d": len(day_rows)}


# ---- reading the raw rows


def _hour_of(engine: Engine) -> str:
    """SQL for the start of a row's hour (its interval end's), as the rollup job buckets."""
    if engine.dialect.name == "postgresql":
        return """(extract(epoch from date_trunc('hour', "timestamp")) * 1000)::bigint"""
    return 'substr("timestamp", 1, 13)'


def _hour_ms(value: Any) -> int:
    if isinstance(value, str):  # SQLite: 'YYYY-MM-DD HH'
        return int(datetime.fromisoformat(value + ":00:00+00:00").timestamp() * 1000)
    return int(value)


def raw_analytics(engine: Engine, dealer_id: str, time_range: TimeRange) -> dict[str, Any]:
    """read_analytics' figures (1-hour step) for one dealer from api_performance and samples."""
    start_ms = int(time_range.start.timestamp() * 1000)
    start_ms -= start_ms % HOUR_MS
    end_ms = int(time_range.end.timestamp() * 1000)
    bounds = {
        "dealer": dealer_id,
        "start": _when(engine, start_ms),
        "end": _when(engine, -(-end_ms // HOUR_MS) * HOUR_MS),
    }
    steps = -(-(end_ms - start_ms) // HOUR_MS)
    hour = _hour_of(engine)
    where = (
        'dealer_id = :dealer AND "timestamp" >= :start AND "timestamp" < :end '
        "AND source != 'probe'"
    )
    with engine.connect() as connection:
        sums = connection.execute(
            text(
                f"SELECT method, endpoint, {hour} AS h, sum(request_count), sum(error_count), "
                f"sum(duration_sum_ms), max(duration_max_ms), min(duration_min_ms) "
                f"FROM api_performance WHERE {where} GROUP BY method, endpoint, h"
            ),
            bounds,
        ).all()
        keys = sorted({(m, e) for m, e, *_ in sums})
        index = {key: k for k, key in enumerate(keys)}
        acc = np.zeros((steps * len(keys), WIDTH))
        sketches = connection.execute(
            text(
                f"SELECT method, endpoint, {hour}, latency_sketch FROM api_performance "
                f"WHERE {where} AND request_count > 0 AND latency_sketch IS NOT NULL"
            ),
            bounds,
        )
        merger = _Merger(acc, index, start_ms)
        for method, route, at, document in sketches:
            merger.add((method, route), at, document)
        merger.flush()
        resources = _raw_resources(connection, dealer_id, start_ms, end_ms)
    return _figures(sums, keys, acc.reshape(steps, len(keys), WIDTH), start_ms, resources)


class _Merger:
    """Adds JSON sketches into ``acc`` (group x WIDTH) in chunks: per row only the parse
    and two list extends; the placing is one ``bincount`` a chunk."""

    CHUNK = 50_000

    def __init__(self, acc: Floats, index: dict[tuple[str, str], int], start_ms: int) -> None:
        self._acc, self._index, self._start_ms = acc, index, start_ms
        self._hours: dict[Any, int] = {}
        self._first: list[int] = []  # flat position of each row's first bin
        self._lengths: list[int] = []
        self._counts: list[int] = []

    def add(self, key: tuple[str, str], at: Any, document: Any) -> None:
        parsed = json.loads(document) if isinstance(document, str) else document
        step = self._hours.get(at)
        if step is None:
            step = self._hours[at] = (_hour_ms(at) - self._start_ms) // HOUR_MS
        group = step * len(self._index) + self._index[key]
        first = min(WIDTH - 1, max(0, parsed["offset"] - LOW_BIN))
        counts = parsed["bins"][: WIDTH - first]
        self._first.append(group * WIDTH + first)
        self._lengths.append(len(counts))
        self._counts.extend(counts)
        if len(self._first) >= self.CHUNK:
            self.flush()

    def flush(self) -> None:
        if not self._first:
            return
        lengths = np.asarray(self._lengths, np.int64)
        starts = np.repeat(np.asarray(self._first, np.int64), lengths)
        within = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        flat = self._acc.reshape(-1)
        flat += np.bincount(starts + within, weights=self._counts, minlength=flat.size)
        self._first, self._lengths, self._counts = [], [], []


def _figures(
    sums: Any, keys: list[tuple[str, str]], acc: Floats, start_ms: int, resources: Any
) -> dict[str, Any]:
    requests = sum(int(r[3]) for r in sums)
    errors = sum(int(r[4]) for r in sums)
    duration = sum(float(r[5]) for r in sums)
    peak = max((float(r[6]) for r in sums), default=None)
    low = min((float(r[7]) for r in sums), default=None)
    total = MergedBins(ACCURACY, LOW_BIN, acc.sum(axis=(0, 1))[None, :], np.zeros(1))
    quantiles = [total.quantiles(q, [low or 0.0], [peak or 0.0])[0] for q in (0.5, 0.95, 0.99)]
    steps = acc.shape[0]
    step_low, step_high = np.full(steps, np.inf), np.full(steps, -np.inf)
    for r in sums:
        k = (_hour_ms(r[2]) - start_ms) // HOUR_MS
        step_low[k], step_high[k] = min(step_low[k], r[7]), max(step_high[k], r[6])
    per_step = MergedBins(ACCURACY, LOW_BIN, acc.sum(axis=1), np.zeros(steps))
    by_endpoint = {
        f"{m} {e}": int(sum(int(r[3]) for r in sums if (r[0], r[1]) == (m, e))) for m, e in keys
    }
    return {
        "requests": requests,
        "errors": errors,
        "avg_ms": duration / requests if requests else None,
        "peak_ms": peak,
        "p50_ms": quantiles[0],
        "p95_ms": quantiles[1],
        "p99_ms": quantiles[2],
        "step_p95_ms": per_step.quantiles(0.95, step_low, step_high),
        "endpoint_requests": by_endpoint,
        "resources": resources,
    }


def _raw_resources(
    connection: Any, dealer_id: str, start_ms: int, end_ms: int
) -> dict[str, tuple[float, float]]:
    """(average, peak) of each host series of the dealer over the range, from samples."""
    rows = connection.execute(
        text(
            "SELECT s.name, s.labels_key, count(*), sum(x.value), max(x.value) "
            "FROM samples x JOIN series s ON s.id = x.series_id "
            "WHERE s.dealer_id = :dealer AND x.time_ms >= :start AND x.time_ms < :end "
            "GROUP BY s.name, s.labels_key"
        ),
        {"dealer": dealer_id, "start": start_ms, "end": -(-end_ms // HOUR_MS) * HOUR_MS},
    ).all()
    return {f"{name}{key}": (total / n, high) for name, key, n, total, high in rows}


def compare(rollup: AnalyticsData, raw: dict[str, Any]) -> dict[str, Any]:
    """The sanity check: the same totals both ways (and how far the percentiles are apart)."""
    summary = rollup.summary
    cpu = next((r for r in rollup.resources if r.name == "cpu.percent"), None)
    raw_cpu = raw["resources"].get("cpu.percent[]")
    return {
        "requests": [summary.requests, raw["requests"]],
        "errors": [summary.errors, raw["errors"]],
        "p95_ms": [summary.p95_ms, raw["p95_ms"]],
        "cpu_avg": [cpu.avg if cpu else None, raw_cpu[0] if raw_cpu else None],
        "same_totals": summary.requests == raw["requests"] and summary.errors == raw["errors"],
        "same_p95": _close(summary.p95_ms, raw["p95_ms"]),
        "same_step_p95": all(
            _close(p.value, q)
            for p, q in zip(rollup.response_time_p95.points, raw["step_p95_ms"], strict=True)
        ),
    }


def _close(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return math.isclose(a, b, rel_tol=1e-9)
