"""API traffic of a range from the endpoint rollups: sums, series and merged percentiles.

The sums in SQL, grouped per (source, method, endpoint, step), sketches left
out; per step, per endpoint, per (endpoint, step) and in total with
``numpy.bincount``. The percentiles from as few sketches as cover the window
(:mod:`reporter.queries.latency`). Synthetic checks (source ``probe``) are
kept apart: they give uptime, not traffic.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from itertools import compress
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import BigInteger, Connection, case, cast, func, literal, literal_column, select

from collector.health import PROBE_SOURCE
from collector.rollup.bins import MergedBins
from collector.rollup.compute import ALL_TRAFFIC
from dealerpulse.clock import from_unix_ms
from reporter.model import EndpointAnalytics, Summary
from reporter.queries.fetch import fetch_all
from reporter.queries.latency import (
    HOUR_MS,
    MINUTE_MS,
    fine_table,
    of_dealers,
    read_endpoint_sketches,
    read_step_sketches,
)
from reporter.queries.window import Floats, Window, ratio, series_of


@dataclass(frozen=True, slots=True)
class _Totals:
    """Sums per group of one grouping (steps, endpoints, or everything)."""

    rows: Floats
    requests: Floats
    errors: Floats
    client_errors: Floats
    duration_ms: Floats
    low_ms: Floats  # over rows with requests; inf without
    high_ms: Floats  # -inf without

    @classmethod
    def of(cls, ids: npt.NDArray[np.int64], size: int, columns: Mapping[str, Floats]) -> _Totals:
        def total(values: Floats) -> Floats:
            summed: Floats = np.bincount(ids, weights=values, minlength=size).astype(np.float64)
            return summed

        busy = columns["requests"] > 0
        low = np.full(size, np.inf)
        high = np.full(size, -np.inf)
        np.minimum.at(low, ids[busy], columns["low"][busy])
        np.maximum.at(high, ids[busy], columns["high"][busy])
        return cls(
            rows=total(columns["rows"]),
            requests=total(columns["requests"]),
            errors=total(columns["errors"]),
            client_errors=total(columns["client_errors"]),
            duration_ms=total(columns["duration"]),
            low_ms=low,
            high_ms=high,
        )

    def avg_ms(self, k: int) -> float | None:
        return float(self.duration_ms[k] / self.requests[k]) if self.requests[k] else None

    def error_rate(self, k: int) -> float | None:
        return float(100.0 * self.errors[k] / self.requests[k]) if self.requests[k] else None

    def peak_ms(self, k: int) -> float | None:
        return float(self.high_ms[k]) if self.requests[k] else None

    def bounds(self) -> tuple[Floats, Floats]:
        has = self.requests > 0
        return np.where(has, self.low_ms, 0.0), np.where(has, self.high_ms, 0.0)

    # Per-group values of groups [start, stop) as lists, None where no data.

    def avg_list(self, start: int, stop: int) -> list[float | None]:
        requests = self.requests[start:stop]
        return ratio(self.duration_ms[start:stop], requests, requests > 0)

    def error_rate_list(self, start: int, stop: int) -> list[float | None]:
        requests = self.requests[start:stop]
        return ratio(100.0 * self.errors[start:stop], requests, requests > 0)

    def per_min_list(self, start: int, stop: int, minutes: Floats) -> list[float | None]:
        return ratio(self.requests[start:stop], minutes, self.rows[start:stop] > 0)


_NO_QUANTILES: tuple[float | None, float | None, float | None] = (None, None, None)


@dataclass(slots=True)
class Traffic:
    """API traffic (probes apart) of the range, grouped per step, endpoint, both, and all."""

    window: Window
    endpoints_found: list[tuple[str, str]]
    steps: _Totals
    by_endpoint: _Totals
    endpoint_steps: _Totals  # group = endpoint * steps + step
    total: _Totals
    probe_requests: int
    probe_errors: int
    last_errors: dict[int, tuple[int, str]]
    step_p95: list[float | None]
    quantiles: dict[int | None, tuple[float | None, ...]]

    def probe_uptime(self) -> float | None:
        if not self.probe_requests:
            return None
        return 100.0 * (self.probe_requests - self.probe_errors) / self.probe_requests

    def summary(self, uptime: float | None) -> Summary:
        total = self.total
        p50, p95, p99 = self.quantiles.get(None, _NO_QUANTILES)
        return Summary(
            requests=int(total.requests[0]),
            errors=int(total.errors[0]),
            error_rate_percent=total.error_rate(0),
            avg_ms=total.avg_ms(0),
            peak_ms=total.peak_ms(0),
            p50_ms=p50,
            p95_ms=p95,
            p99_ms=p99,
            throughput_per_min=float(total.requests[0]) / self.window.minutes,
            uptime_percent=uptime,
        )

    def step_values(self, kind: str) -> list[float | None]:
        count, steps = self.window.steps, self.steps
        if kind == "avg":
            return steps.avg_list(0, count)
        if kind == "error_rate":
            return steps.error_rate_list(0, count)
        return steps.per_min_list(0, count, self.window.minutes_per_step())

    def endpoints(self, step: timedelta) -> tuple[EndpointAnalytics, ...]:
        order = sorted(
            range(len(self.endpoints_found)),
            key=lambda e: (-self.by_endpoint.requests[e], self.endpoints_found[e]),
        )
        return tuple(self._endpoint(e, step) for e in order)

    def _endpoint(self, e: int, step: timedelta) -> EndpointAnalytics:
        method, route = self.endpoints_found[e]
        sums, window = self.by_endpoint, self.window
        p50, p95, p99 = self.quantiles.get(e, _NO_QUANTILES)
        rate = sums.error_rate(e)
        last_at, last_error = self.last_errors.get(e, (None, ""))
        first, stop = e * window.steps, (e + 1) * window.steps
        per_step = self.endpoint_steps
        name = f"endpoint.{method} {route}"
        return EndpointAnalytics(
            route=route,
            method=method,
            requests=int(sums.requests[e]),
            errors=int(sums.errors[e]),
            client_errors=int(sums.client_errors[e]),
            error_rate_percent=rate,
            success_rate_percent=None if rate is None else 100.0 - rate,
            calls_per_hour=float(sums.requests[e]) / (window.minutes / 60),
            avg_ms=sums.avg_ms(e),
            peak_ms=sums.peak_ms(e),
            p50_ms=p50,
            p95_ms=p95,
            p99_ms=p99,
            last_error=last_error,
            last_error_at=from_unix_ms(last_at) if last_at is not None else None,
            response_time=series_of(
                f"{name}.avg_ms", "ms", step, window, per_step.avg_list(first, stop)
            ),
            error_rate=series_of(
                f"{name}.error_rate",
                "percent",
                step,
                window,
                per_step.error_rate_list(first, stop),
            ),
            throughput=series_of(
                f"{name}.per_min",
                "requests_per_minute",
                step,
                window,
                per_step.per_min_list(first, stop, window.minutes_per_step()),
            ),
        )


def read_endpoints(connection: Connection, dealer_ids: Sequence[str], window: Window) -> Traffic:
    grouped = _grouped_rows(connection, dealer_ids, window)
    # Columns of the rows, transposed in C: a Python loop per row is slow.
    columns_of: list[tuple[Any, ...]] = list(zip(*grouped, strict=True)) if grouped else [()] * 11
    every_column = {
        name: np.asarray(columns_of[index], dtype=np.float64)
        for name, index in (
            ("requests", 4),
            ("errors", 5),
            ("client_errors", 6),
            ("duration", 7),
            ("low", 8),
            ("high", 9),
            ("rows", 10),
        )
    }
    probe = np.asarray(columns_of[0], dtype=object) == PROBE_SOURCE
    kept = ~probe
    columns = {name: values[kept] for name, values in every_column.items()}
    keys = list(compress(zip(columns_of[1], columns_of[2], strict=True), kept.tolist()))
    found = {key: e for e, key in enumerate(dict.fromkeys(keys))}
    steps = window.steps
    buckets = np.asarray(columns_of[3], dtype=np.int64)[kept]
    step_ids = (buckets - window.start_ms) // window.step_ms
    endpoint_ids = np.fromiter(map(found.__getitem__, keys), np.int64, len(keys))
    probe_requests = int(every_column["requests"][probe].sum())
    probe_errors = int(every_column["errors"][probe].sum())
    everything = np.zeros(len(keys), dtype=np.int64)
    traffic = Traffic(
        window=window,
        endpoints_found=list(found),
        steps=_Totals.of(step_ids, steps, columns),
        by_endpoint=_Totals.of(endpoint_ids, len(found), columns),
        endpoint_steps=_Totals.of(endpoint_ids * steps + step_ids, len(found) * steps, columns),
        total=_Totals.of(everything, 1, columns),
        probe_requests=probe_requests,
        probe_errors=probe_errors,
        last_errors=_last_errors(connection, dealer_ids, window, found),
        step_p95=[None] * steps,
        quantiles={},
    )
    _quantiles(connection, traffic, dealer_ids, found)
    return traffic


def _grouped_rows(connection: Connection, dealer_ids: Sequence[str], window: Window) -> list[Any]:
    """Sums per (source, method, endpoint, step), sketches left out.

    Columns: source, method, endpoint, step start (ms), requests, errors,
    client errors, duration sum, min and max over rows with requests (NULL
    without), rows. Grouped in SQL when that makes fewer rows (steps longer
    than the table's buckets, several dealers); else the rows as stored, one
    per agent and bucket, which numpy sums as well and SQLite returns faster.
    """
    table = fine_table(window)
    c = table.c
    busy = c.request_count > 0
    low, high = case((busy, c.duration_min_ms)), case((busy, c.duration_max_ms))
    resolution_ms = HOUR_MS if window.hourly else MINUTE_MS
    conditions = (
        of_dealers(table, dealer_ids),
        c.bucket_ms >= window.start_ms,
        c.bucket_ms < window.end_ms,
        c.source != ALL_TRAFFIC,
    )
    if window.step_ms == resolution_ms and len(dealer_ids) == 1:
        counts = (c.request_count, c.error_count, c.client_error_count, c.duration_sum_ms)
        plain = select(c.source, c.method, c.endpoint, c.bucket_ms, *counts, low, high, literal(1))
        return fetch_all(connection, plain.where(*conditions))
    # Written into the SQL (whole numbers computed here): PostgreSQL must see
    # the same expression in SELECT and GROUP BY, which two parameters are not.
    step_of = literal_column(
        f"bucket_ms - (bucket_ms - {window.start_ms:d}) % {window.step_ms:d}", BigInteger
    )
    query = (
        select(
            c.source,
            c.method,
            c.endpoint,
            step_of,
            # PostgreSQL sums bigints as numeric (Decimal in Python): back to bigint.
            cast(func.sum(c.request_count), BigInteger),
            cast(func.sum(c.error_count), BigInteger),
            cast(func.sum(c.client_error_count), BigInteger),
            func.sum(c.duration_sum_ms),
            func.min(low),
            func.max(high),
            func.count(),
        )
        .where(*conditions)
        .group_by(c.source, c.method, c.endpoint, step_of)
    )
    return fetch_all(connection, query)


def _last_errors(
    connection: Connection,
    dealer_ids: Sequence[str],
    window: Window,
    found: Mapping[tuple[str, str], int],
) -> dict[int, tuple[int, str]]:
    """Per endpoint: (time, message) of its newest error in the window."""
    table = fine_table(window)
    c = table.c
    with_errors = (
        of_dealers(table, dealer_ids),
        c.bucket_ms >= window.start_ms,
        c.bucket_ms < window.end_ms,
        c.source.not_in((PROBE_SOURCE, ALL_TRAFFIC)),
        c.error_count > 0,
        c.last_error_ms.is_not(None),
    )
    newest = (
        select(c.method, c.endpoint, func.max(c.last_error_ms).label("at"))
        .where(*with_errors)
        .group_by(c.method, c.endpoint)
        .subquery()
    )
    query = (
        select(c.method, c.endpoint, c.last_error_ms, c.last_error)
        .join(
            newest,
            (c.method == newest.c.method)
            & (c.endpoint == newest.c.endpoint)
            & (c.last_error_ms == newest.c.at),
        )
        .where(*with_errors)
    )
    result: dict[int, tuple[int, str]] = {}
    for method, route, at, message in fetch_all(connection, query):
        e = found.get((method, route))
        # Ties (the same millisecond) keep the largest message: deterministic.
        if e is not None and (e not in result or message > result[e][1]):
            result[e] = (at, message)
    return result


def _quantiles(
    connection: Connection,
    traffic: Traffic,
    dealer_ids: Sequence[str],
    found: Mapping[tuple[str, str], int],
) -> None:
    """p95 per step and p50/p95/p99 in total from the ``*`` rows, per endpoint from
    as few rows as cover the window (:mod:`reporter.queries.latency`)."""
    window = traffic.window
    per_step = read_step_sketches(connection, dealer_ids, window)
    if per_step is not None:
        traffic.step_p95 = per_step.quantiles(0.95, *traffic.steps.bounds())
        total = MergedBins(
            per_step.relative_accuracy,
            per_step.low,
            per_step.counts.sum(0, keepdims=True),
            per_step.zero.sum(0, keepdims=True),
        )
        low, high = traffic.total.bounds()
        traffic.quantiles[None] = tuple(total.quantiles(q, low, high)[0] for q in (0.5, 0.95, 0.99))
    per_endpoint = read_endpoint_sketches(connection, dealer_ids, window, found)
    if per_endpoint is not None:
        lows, highs = traffic.by_endpoint.bounds()
        p50, p95, p99 = (per_endpoint.quantiles(q, lows, highs) for q in (0.5, 0.95, 0.99))
        for e in range(len(found)):
            traffic.quantiles[e] = (p50[e], p95[e], p99[e])
