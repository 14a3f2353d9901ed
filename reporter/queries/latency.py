"""Latency percentiles of a range from as few sketches as the rollups allow.

Merging sketches is adding their bucket counts, so any set of rows that
covers the same raw data gives the same merged sketch. The reader picks the
smallest such set:

- per step, dealer-wide: the ``*`` rows of the window's table (one per agent
  and bucket, all its traffic but probes), 720 for a month at 1 h;
- per endpoint over the range: the coarser table (1-day rows for hourly
  windows, 1-hour rows for minute windows) for the coarse buckets wholly
  inside the window, the window's own table for the partial edges: about
  30 + 47 rows per endpoint for a month instead of 720;
- the range total: the sum of the per-step merges.

The same as merging every row, except where DDSketch's ``max_bins`` folding
would start (a span of 2048 buckets, values 10**17 apart at 1 %).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sqlalchemy import ColumnElement, Connection, Table, select

from collector.health import PROBE_SOURCE
from collector.rollup.bins import MergedBins, merge_encoded
from collector.rollup.compute import ALL_TRAFFIC
from collector.store.schema import endpoint_rollup_1d, endpoint_rollup_1h, endpoint_rollup_1m
from reporter.queries.fetch import fetch_all
from reporter.queries.window import Window

MINUTE_MS = 60_000
HOUR_MS = 3_600_000
DAY_MS = 86_400_000

Span = tuple[Table, int, int]
"""Rows of a table with bucket_ms in [start, end)."""


def fine_table(window: Window) -> Table:
    return endpoint_rollup_1h if window.hourly else endpoint_rollup_1m


def endpoint_spans(window: Window) -> list[Span]:
    """Spans covering exactly the fine buckets of the window, coarse rows where whole."""
    fine = fine_table(window)
    coarse, coarse_ms, fine_ms = (
        (endpoint_rollup_1d, DAY_MS, HOUR_MS)
        if window.hourly
        else (endpoint_rollup_1h, HOUR_MS, MINUTE_MS)
    )
    # The window holds every fine bucket that starts before its end.
    start, end = window.start_ms, -(-window.end_ms // fine_ms) * fine_ms
    inner_start = -(-start // coarse_ms) * coarse_ms
    inner_end = end - end % coarse_ms
    if inner_start >= inner_end:
        return [(fine, start, end)]
    spans = [(fine, start, inner_start), (coarse, inner_start, inner_end), (fine, inner_end, end)]
    return [(table, low, high) for table, low, high in spans if low < high]


def of_dealers(table: Table, dealer_ids: Sequence[str]) -> ColumnElement[bool]:
    c = table.c
    return c.dealer_id == dealer_ids[0] if len(dealer_ids) == 1 else c.dealer_id.in_(dealer_ids)


def read_step_sketches(
    connection: Connection, dealer_ids: Sequence[str], window: Window
) -> MergedBins | None:
    """The dealer-wide sketch of every step (None: no sketch in the window)."""
    table = fine_table(window)
    c = table.c
    query = select(c.bucket_ms, c.latency_sketch).where(
        of_dealers(table, dealer_ids),
        c.bucket_ms >= window.start_ms,
        c.bucket_ms < window.end_ms,
        c.source == ALL_TRAFFIC,
        c.request_count > 0,
        c.latency_sketch.is_not(None),
    )
    rows = fetch_all(connection, query)
    start, step = window.start_ms, window.step_ms
    return merge_encoded(
        [bytes(blob) for _, blob in rows],
        [(bucket - start) // step for bucket, _ in rows],
        window.steps,
    )


def read_endpoint_sketches(
    connection: Connection,
    dealer_ids: Sequence[str],
    window: Window,
    endpoint_ids: Mapping[tuple[str, str], int],
) -> MergedBins | None:
    """One sketch per endpoint of ``endpoint_ids`` (method, route) over the window."""
    blobs: list[bytes] = []
    groups: list[int] = []
    for table, start, end in endpoint_spans(window):
        c = table.c
        query = select(c.method, c.endpoint, c.latency_sketch).where(
            of_dealers(table, dealer_ids),
            c.bucket_ms >= start,
            c.bucket_ms < end,
            c.source.not_in((PROBE_SOURCE, ALL_TRAFFIC)),
            c.request_count > 0,
            c.latency_sketch.is_not(None),
        )
        for method, route, blob in fetch_all(connection, query):
            # A route the sums did not see was rolled up after they were read.
            group = endpoint_ids.get((method, route))
            if group is not None:
                blobs.append(bytes(blob))
                groups.append(group)
    return merge_encoded(blobs, groups, len(endpoint_ids))
