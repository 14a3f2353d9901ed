"""Host resources of a range from the metric rollups, and agent liveness.

One query, grouped per series and step in SQL; the combination per resource
(and per agent when a dealer has several) with ``numpy``.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import Connection, select, text

from collector.health import LIVENESS_METRIC
from collector.store.schema import series
from reporter.model import ResourceUsage
from reporter.queries.fetch import fetch_all
from reporter.queries.window import Floats, Window, ratio, series_of

# Stored metric -> ResourceUsage name.
RESOURCE_METRICS: Mapping[str, str] = {
    "cpu.percent": "cpu.percent",
    "memory.percent": "memory.percent",
    "disk.used_percent": "disk.percent",
    "net.recv_percent": "network.percent",
    "net.sent_percent": "network.percent",
}
# Extra host series for the forecasting rules, under their stored names.
HOST_METRICS = (
    "memory.used_bytes",
    "memory.total_bytes",
    "memory.available_bytes",
    "disk.used_bytes",
    "disk.total_bytes",
    "disk.free_bytes",
)


@dataclass(frozen=True, slots=True)
class _Described:
    dealer_id: str
    agent_id: str
    name: str
    labels: Mapping[str, str]
    unit: str


@dataclass(frozen=True, slots=True)
class Metrics:
    """Metric rollups grouped per series and step, as columns."""

    series: npt.NDArray[np.int64]
    step: npt.NDArray[np.int64]
    count: Floats
    total: Floats
    high: Floats
    last: Floats
    described: Mapping[int, _Described]


def read_metrics(connection: Connection, dealer_id: str | None, window: Window) -> Metrics:
    table = "metric_rollup_1h" if window.hourly else "metric_rollup_1m"
    names = sorted({*RESOURCE_METRICS, *HOST_METRICS, LIVENESS_METRIC})
    name_params = {f"n{i}": name for i, name in enumerate(names)}
    dealer_filter = "s.dealer_id = :dealer AND " if dealer_id is not None else ""
    # Written into the SQL (whole numbers computed here): PostgreSQL must see
    # the same expression in SELECT and GROUP BY, which two parameters are not.
    step_of = f"r.bucket_ms - (r.bucket_ms - {window.start_ms:d}) % {window.step_ms:d}"
    wanted = f"""r.series_id IN (
                SELECT s.id FROM series s
                WHERE {dealer_filter}s.name IN ({", ".join(":" + k for k in name_params)})
            ) AND r.bucket_ms >= :start AND r.bucket_ms < :end"""
    # Grouped per series and step in SQL; the newest value of each group is
    # the value_last of its newest bucket, found through the primary key.
    # Steps of one bucket are the rows themselves: no grouping, no lookup.
    resolution_ms = 3_600_000 if window.hourly else 60_000
    query = text(
        f"""
        SELECT r.series_id, r.bucket_ms, r.value_count, r.value_sum, r.value_max, r.value_last
        FROM {table} r WHERE {wanted}
        """
        if window.step_ms == resolution_ms
        else f"""
        SELECT g.series_id, g.step_ms, g.n, g.total, g.high,
            (SELECT r2.value_last FROM {table} r2
             WHERE r2.series_id = g.series_id AND r2.bucket_ms = g.last_bucket) AS last
        FROM (
            SELECT r.series_id, {step_of} AS step_ms, sum(r.value_count) AS n,
                sum(r.value_sum) AS total, max(r.value_max) AS high, max(r.bucket_ms) AS last_bucket
            FROM {table} r
            WHERE {wanted}
            GROUP BY r.series_id, {step_of}
        ) g
        """
    )
    params: dict[str, Any] = {"start": window.start_ms, "end": window.end_ms, **name_params}
    if dealer_id is not None:
        params["dealer"] = dealer_id
    grouped = fetch_all(connection, query, params)
    columns: list[tuple[Any, ...]] = list(zip(*grouped, strict=True)) if grouped else [()] * 6
    series_ids = np.asarray(columns[0], dtype=np.int64)
    return Metrics(
        series=series_ids,
        step=(np.asarray(columns[1], dtype=np.int64) - window.start_ms) // window.step_ms,
        count=np.asarray(columns[2], dtype=np.float64),
        total=np.asarray(columns[3], dtype=np.float64),
        high=np.asarray(columns[4], dtype=np.float64),
        last=np.asarray(columns[5], dtype=np.float64),
        described=_describe_series(connection, sorted(set(series_ids.tolist()))),
    )


def _describe_series(connection: Connection, ids: Sequence[int]) -> dict[int, _Described]:
    described: dict[int, _Described] = {}
    c = series.c
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        query = select(c.id, c.dealer_id, c.agent_id, c.name, c.labels, c.unit).where(
            c.id.in_(chunk)
        )
        for row in connection.execute(query):
            labels = row.labels if isinstance(row.labels, dict) else json.loads(row.labels)
            described[row.id] = _Described(row.dealer_id, row.agent_id, row.name, labels, row.unit)
    return described


def liveness_uptime(metrics: Metrics, window: Window) -> float | None:
    """Percent of the range some agent of each dealer reported (mean over dealers).

    The agent samples on a fixed interval: a full step holds the median count
    of the steps that have any, and each sample vouches for one interval.
    Needs a fair number of steps to tell the median (the 1-minute table for
    short ranges, the default steps give 60 or more).
    """
    dealers_of = {
        sid: d.dealer_id
        for sid, d in metrics.described.items()
        if d.name == LIVENESS_METRIC and not d.labels
    }
    dealer_ids = sorted(set(dealers_of.values()))
    if not dealer_ids:
        return None
    index = {dealer: k for k, dealer in enumerate(dealer_ids)}
    rows = np.isin(metrics.series, np.fromiter(dealers_of, np.int64, len(dealers_of)))
    owner = np.asarray([index[dealers_of[sid]] for sid in metrics.series[rows].tolist()], np.int64)
    # Several agents of one dealer report at the same times: any counts (max).
    best = np.zeros(len(dealer_ids) * window.steps)
    np.maximum.at(best, owner * window.steps + metrics.step[rows], metrics.count[rows])
    uptimes = []
    for per_step in best.reshape(len(dealer_ids), window.steps):
        counts = per_step[per_step > 0]
        if counts.size < 2:
            continue
        full = float(np.median(counts))
        expected = full * (window.end_ms - window.start_ms) / window.step_ms
        uptimes.append(min(100.0, 100.0 * float(np.minimum(counts, full).sum()) / expected))
    return statistics.fmean(uptimes) if uptimes else None


_Key = tuple[str, str, tuple[tuple[str, str], ...]]
"""(kind "resource" or "host", name, labels)."""


def _usage_key(described: _Described, several_agents: bool) -> _Key | None:
    if described.name in RESOURCE_METRICS:
        kind, name = "resource", RESOURCE_METRICS[described.name]
    elif described.name in HOST_METRICS:
        kind, name = "host", described.name
    else:
        return None
    labels = dict(described.labels)
    if described.name.startswith("net."):
        labels["direction"] = described.name.split(".")[1].split("_")[0]
    if several_agents:
        labels["agent"] = described.agent_id
    return kind, name, tuple(sorted(labels.items()))


def resources_of(
    metrics: Metrics, window: Window, *, per_agent: bool
) -> tuple[tuple[ResourceUsage, ...], dict[str, tuple[ResourceUsage, ...]]]:
    """Resources and host series; per agent when a dealer has several, else merged."""
    agents_of: dict[str, set[str]] = {}
    for described in metrics.described.values():
        agents_of.setdefault(described.name, set()).add(described.agent_id)
    key_of: dict[int, _Key] = {}
    for sid, described in metrics.described.items():
        key = _usage_key(described, per_agent and len(agents_of[described.name]) > 1)
        if key is not None:
            key_of[sid] = key
    keys = sorted(set(key_of.values()))
    if not keys:
        return (), {}
    position = {key: k for k, key in enumerate(keys)}
    usage_of = {sid: position[key] for sid, key in key_of.items()}
    kept = np.isin(metrics.series, np.fromiter(usage_of, np.int64, len(usage_of)))
    usage = np.asarray([usage_of[sid] for sid in metrics.series[kept].tolist()], np.int64)
    steps = window.steps
    cells = usage * steps + metrics.step[kept]
    size = len(keys) * steps
    count = np.bincount(cells, weights=metrics.count[kept], minlength=size).reshape(-1, steps)
    total = np.bincount(cells, weights=metrics.total[kept], minlength=size).reshape(-1, steps)
    peak = np.full(len(keys), -np.inf)
    np.maximum.at(peak, usage, metrics.high[kept])
    latest = _latest(metrics, usage_of, len(keys))
    step = timedelta(milliseconds=window.step_ms)
    unit_of = {key_of[sid]: d.unit for sid, d in metrics.described.items() if sid in key_of}
    resources: list[ResourceUsage] = []
    host: dict[str, list[ResourceUsage]] = {}
    for k, (kind, name, labels) in enumerate(keys):
        n, summed = float(count[k].sum()), float(total[k].sum())
        label_text = ",".join(f"{a}={b}" for a, b in labels)
        found = ResourceUsage(
            name=name,
            unit=unit_of[keys[k]],
            labels=dict(labels),
            avg=summed / n if n else None,
            peak=float(peak[k]) if n else None,
            latest=latest[k],
            series=series_of(
                f"{name}{{{label_text}}}" if label_text else name,
                unit_of[keys[k]],
                step,
                window,
                ratio(total[k], count[k], count[k] > 0),
            ),
        )
        if kind == "resource":
            resources.append(found)
        else:
            host.setdefault(name, []).append(found)
    return tuple(resources), {name: tuple(found) for name, found in host.items()}


def _latest(metrics: Metrics, usage_of: Mapping[int, int], usages: int) -> list[float | None]:
    """Per usage: the newest value, averaged over its series that reported last."""
    # One row per (series, step): sorted by series then step, each series'
    # last row is its newest.
    order = np.lexsort((metrics.step, metrics.series))
    ordered = metrics.series[order]
    ends = (
        order[np.flatnonzero(np.append(ordered[1:] != ordered[:-1], True))] if order.size else order
    )
    newest: dict[int, tuple[int, float]] = {
        sid: (step, last)
        for sid, step, last in zip(
            metrics.series[ends].tolist(),
            metrics.step[ends].tolist(),
            metrics.last[ends].tolist(),
            strict=True,
        )
        if sid in usage_of
    }
    per_usage: list[list[tuple[int, float]]] = [[] for _ in range(usages)]
    for sid, found in newest.items():
        per_usage[usage_of[sid]].append(found)
    result: list[float | None] = []
    for parts in per_usage:
        top = max((step for step, _ in parts), default=None)
        values = [value for step, value in parts if step == top]
        result.append(statistics.fmean(values) if values else None)
    return result
