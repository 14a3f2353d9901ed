"""ReporterCore: the reporter's operations (:class:`reporter.model.Reporter`) over the store.

- real time: the health :func:`collector.health.dealer_health` gives over the
  last ``realtime_window_s`` plus a :class:`ResourceSnapshot` from the newest
  samples, read in one lean pass (:func:`reporter.queries.health.read_realtime`);
- analytics: the rollup queries (:func:`reporter.queries.read_analytics`)
  and the analysis (:func:`reporter.analysis.analyse`); recommendations are
  the analytics' own, so both share one cached computation;
- reports: :mod:`reporter.reports` (generation and the archive).

Answers go through a :class:`reporter.cache.ResultCache`, keyed by dealer
and range, and fresh by the rules described there. A range that ends "now"
(within its TTL) is keyed by its length, so ``30d`` asked twice a second
apart is one entry. The dealer's watermark is read *before* computing, so a
batch that lands during a computation makes the next call recompute rather
than serve an answer that misses it.

The watermark itself is remembered for ``watermark_ttl_s`` (0.5 s; a
monotonic interval of the clock): under a burst of requests one query per
dealer and half-second tells every request whether data moved, instead of
one query per request (which cost more than the cached answer itself). So
new data invalidates a cached answer within ``watermark_ttl_s``, and an
answer is still never older than its TTL.

Synchronous and thread-safe: the gRPC and HTTP transports call it from
worker threads.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select

from collector.abc import LatestSample, UnknownDealer
from collector.store import SQLAlchemyMetricStore
from collector.store.engine import translated_errors
from collector.store.schema import agents
from dealerpulse.clock import Clock, SystemClock, to_unix_ms
from reporter.cache import CacheStats, InProcessResultCache, ResultCache
from reporter.codec import KIND_ANALYTICS, KIND_REALTIME
from reporter.model import (
    Analytics,
    Realtime,
    Recommendation,
    ReportFormat,
    ReportRecord,
    ResourceSnapshot,
    TimeRange,
)
from reporter.settings import ReporterSettings

logger = logging.getLogger(__name__)

# How long a dealer's data watermark is trusted without asking the store again.
WATERMARK_TTL_S = 0.5
# Dealers whose watermark is remembered at most (a crude bound: it is refilled quickly).
MAX_WATERMARKS = 10_000

CPU, MEMORY, DISK = "cpu.percent", "memory.percent", "disk.used_percent"
NETWORK = ("net.recv_percent", "net.sent_percent")
SNAPSHOT_METRICS = (CPU, MEMORY, DISK, *NETWORK)


class NotAvailable(Exception):
    """A part of the reporter this installation lacks (e.g. report rendering)."""


class ReporterCore:
    def __init__(
        self,
        store: SQLAlchemyMetricStore,
        clock: Clock | None = None,
        settings: ReporterSettings | None = None,
        cache: ResultCache | None = None,
        watermark_ttl_s: float = WATERMARK_TTL_S,
    ) -> None:
        if watermark_ttl_s < 0:
            raise ValueError(f"watermark_ttl_s must be zero or positive, got {watermark_ttl_s}")
        self._store = store
        self._clock = clock or SystemClock()
        self._settings = settings or ReporterSettings()
        self._cache = cache or InProcessResultCache(self._clock, self._settings.cache_max_entries)
        self._reports: Any = None
        self._watermark_ttl_s = watermark_ttl_s
        # dealer id (None: every dealer) -> (watermark, monotonic expiry). Single dict
        # operations are atomic: a race costs at most one extra query.
        self._watermarks: dict[str | None, tuple[float | None, float]] = {}
        _import_queries()

    @property
    def store(self) -> SQLAlchemyMetricStore:
        return self._store

    def cache_stats(self) -> CacheStats:
        return self._cache.stats()

    def close(self) -> None:
        self._cache.close()

    # ---- real time

    def realtime(self, dealer_id: str) -> Realtime:
        freshness = self._settings.ttls.realtime()
        watermark = self.watermark(dealer_id)
        return self._cache.get_or_compute(
            KIND_REALTIME, dealer_id, freshness, watermark, lambda: self._realtime(dealer_id)
        )

    def realtime_if_ready(self, dealer_id: str) -> Realtime | None:
        """The real-time answer when it is at hand without I/O, else None (call
        :meth:`realtime`): the cache is in memory and holds a fresh answer, and the
        dealer's watermark was read within ``watermark_ttl_s``. The same answer
        :meth:`realtime` would give, without a hop to a worker thread."""
        if not self._cache.in_memory:
            return None
        remembered = self._remembered_watermark(dealer_id)
        if remembered is None:
            return None
        freshness = self._settings.ttls.realtime()
        entry = self._cache.fresh_entry(KIND_REALTIME, dealer_id, freshness, remembered[0])
        if entry is None:
            return None
        answer: Realtime = entry.value
        return answer

    def _realtime(self, dealer_id: str) -> Realtime:
        # Imported here as analytics are: reporter.queries brings numpy along.
        from reporter.queries.health import read_realtime

        now = self._clock.now()
        start = now - timedelta(seconds=self._settings.realtime_window_s)
        with translated_errors(f"reading the real-time health of {dealer_id!r}"):
            read = read_realtime(
                self._store.engine,
                dealer_id,
                start,
                now,
                self._settings.thresholds,
                SNAPSHOT_METRICS,
            )
        if read is None:
            raise UnknownDealer(f"no dealer {dealer_id!r}")
        return Realtime(health=read.health, resources=resource_snapshot(read.latest), as_of=now)

    # ---- analytics

    def analytics(self, dealer_id: str | None, time_range: TimeRange) -> Analytics:
        freshness = self._settings.ttls.for_range(time_range.duration)
        key = self._range_key(dealer_id, time_range, freshness.ttl_s)
        watermark = self.watermark(dealer_id)
        return self._cache.get_or_compute(
            KIND_ANALYTICS,
            key,
            freshness,
            watermark,
            lambda: self._analytics(dealer_id, time_range),
        )

    def recommendations(
        self, dealer_id: str | None, time_range: TimeRange
    ) -> tuple[Recommendation, ...]:
        return self.analytics(dealer_id, time_range).recommendations

    def _analytics(self, dealer_id: str | None, time_range: TimeRange) -> Analytics:
        if dealer_id is not None:
            self._require_dealer(dealer_id)
        try:
            from reporter.analysis import analyse
            from reporter.queries import read_analytics
        except ImportError as exc:
            raise NotAvailable(f"analytics are not available in this installation: {exc}") from exc
        with translated_errors(f"reading analytics of {dealer_id or 'every dealer'}"):
            data = read_analytics(self._store.engine, dealer_id, time_range)
        trends, recommendations = analyse(data, self._settings.thresholds)
        return Analytics(data, tuple(trends), tuple(recommendations))

    def _range_key(self, dealer_id: str | None, time_range: TimeRange, ttl_s: float) -> str:
        scope = dealer_id or "*"
        now = self._clock.now()
        if abs((now - time_range.end).total_seconds()) <= ttl_s:
            # "The last N": one entry however many milliseconds apart it is asked.
            return f"{scope}:last:{int(time_range.duration.total_seconds())}"
        return f"{scope}:{to_unix_ms(time_range.start)}-{to_unix_ms(time_range.end)}"

    # ---- reports

    def generate_report(
        self, dealer_id: str | None, time_range: TimeRange, fmt: ReportFormat
    ) -> ReportRecord:
        if dealer_id is not None:
            self._require_dealer(dealer_id)
        generator = self._report_parts()
        record: ReportRecord = generator.generate(dealer_id, time_range)
        if record.format is fmt:
            return record
        found = generator.archive.get(record.report_id, fmt)
        if found is None:
            raise NotAvailable(f"report {record.report_id} has no {fmt.value} rendering")
        rendered: ReportRecord = found
        return rendered

    def list_reports(self, dealer_id: str | None, limit: int = 50) -> list[ReportRecord]:
        found: list[ReportRecord] = self._report_parts().archive.list(dealer_id, limit)
        return found

    def get_report(self, report_id: int, fmt: ReportFormat | None = None) -> ReportRecord | None:
        found: ReportRecord | None = self._report_parts().archive.get(report_id, fmt)
        return found

    def _report_parts(self) -> Any:
        if self._reports is None:
            try:
                from reporter.reports.generator import ReportGenerator
            except ImportError as exc:
                raise NotAvailable(
                    f"reports are not available in this installation: {exc}"
                ) from exc
            # Reports read analytics through this core: cached like any other answer.
            self._reports = ReportGenerator(self._store.engine, self.analytics, self._clock)
        return self._reports

    # ---- the store

    def watermark(self, dealer_id: str | None) -> float | None:
        """When data last arrived for the dealer (every dealer: None), as unix seconds.

        As read at most ``watermark_ttl_s`` ago (see the module doc).
        """
        asked_at = self._clock.monotonic()
        remembered = self._remembered_watermark(dealer_id)
        if remembered is not None:
            return remembered[0]
        seen = self._read_watermark(dealer_id)
        if self._watermark_ttl_s > 0:
            if len(self._watermarks) >= MAX_WATERMARKS:
                self._watermarks.clear()
            # Trusted from when the read began: it cannot miss anything older.
            self._watermarks[dealer_id] = (seen, asked_at + self._watermark_ttl_s)
        return seen

    def _remembered_watermark(self, dealer_id: str | None) -> tuple[float | None] | None:
        """The watermark read within ``watermark_ttl_s`` (in a 1-tuple: it may be None)."""
        remembered = self._watermarks.get(dealer_id)
        if remembered is None or remembered[1] <= self._clock.monotonic():
            return None
        return (remembered[0],)

    def _read_watermark(self, dealer_id: str | None) -> float | None:
        query = select(func.max(agents.c.last_seen))
        if dealer_id is not None:
            query = query.where(agents.c.dealer_id == dealer_id)
        with translated_errors("reading the data watermark"), self._store.engine.connect() as db:
            seen: datetime | None = db.scalar(query)
        return None if seen is None else seen.timestamp()

    def _require_dealer(self, dealer_id: str) -> None:
        if self._store.get_dealer(dealer_id) is None:
            raise UnknownDealer(f"no dealer {dealer_id!r}")


def _import_queries() -> None:
    """Import the queries now rather than in the first request (numpy's import alone takes
    0.1 s, more on a busy host, and a cold burst would wait for it)."""
    try:
        import reporter.queries.health  # noqa: F401
    except ImportError as exc:  # an installation without analytics: said when asked
        logger.debug("reporter queries not importable yet: %s", exc)


def resource_snapshot(latest: Sequence[LatestSample]) -> ResourceSnapshot:
    """The newest figures of every agent of a dealer: the busiest host's CPU and
    memory, the fullest disk, the busiest link direction (of its speed)."""
    chosen = [s for s in latest if s.name in SNAPSHOT_METRICS]

    def highest(names: Iterable[str], whole_host: bool = False) -> float | None:
        wanted = set(names)
        values = [s.value for s in chosen if s.name in wanted and not (whole_host and s.labels)]
        return max(values) if values else None

    return ResourceSnapshot(
        # Whole-host series only: per-core CPU carries a label.
        cpu_percent=highest([CPU], whole_host=True),
        memory_percent=highest([MEMORY], whole_host=True),
        disk_percent=highest([DISK]),
        network_percent=highest(NETWORK),
        as_of=max((s.time for s in chosen), default=None),
    )
