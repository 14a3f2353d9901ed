"""Where the collector's memory goes under a swarm: a collector in this process, measured.

    python -m tests.reliability.soak_profile --agents 200 --seconds 180 \\
        [--interval 2 --samples 100] [--tracemalloc-every 30] [--disconnect-every 0.5] \\
        [--trim-every 15] [--arena-max 2] [--sqlite-cache-mib 64] [--db sqlite:///PATH] \\
        [--detail 60] [--seed 400]

Runs the real collector (``run_collector``) in this process and the swarm
(tests/e2e/swarm.py) as a child, and every few seconds logs one line: RSS,
SQLite's own heap (``sqlite3_memory_used``, which tracemalloc cannot see),
the Python heap traced by tracemalloc, the number of Python objects allocated
(``sys.getallocatedblocks``, cheap) and the number of threads. With
``--tracemalloc-every`` it also logs the 15 allocation sites that grew most
since the first snapshot after warm-up. ``--trim-every`` calls glibc's
``malloc_trim`` that often and logs RSS before and after (what RSS holds that
is free, not live); ``--arena-max`` limits glibc's malloc arenas (``mallopt``)
before any thread starts. At the end it logs the RSS figures of the second
after warm-up and the soak's verdict (:func:`flatness`). ``--detail N`` adds a
line per period (glibc's malloc totals and arenas, anonymous/file RSS, CPython's
pymalloc arenas, SQLite's heap and page-cache peaks since the last line, the
database files, the pool) and every N seconds the object types and SQL texts that
grew. ``--seed N`` first gives every series of the swarm N samples of history
(:data:`SEED_SAMPLES_PER_SERIES`). A debugging tool, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import ctypes
import ctypes.util
import dataclasses
import gc
import logging
import os
import signal
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
import tracemalloc
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psutil
from sqlalchemy import delete, event

from collector.abc import AgentInfo
from collector.admin import add_dealer
from collector.server import CollectorServer
from collector.settings import CollectorSettings
from collector.store import open_store
from collector.store.memory import release_free_memory
from collector.store.schema import samples
from collector.store.series import resolve_missing
from collector.store.store import SQLAlchemyMetricStore
from dealerpulse.clock import SystemClock
from dealerpulse.model import Labels, labels_of

from .swarm_check import agent_ids, start_swarm

logger = logging.getLogger(__name__)
MIB = 1024 * 1024
M_ARENA_MAX = -8  # glibc's mallopt parameter number
# sqlite3_status() counter: page cache memory taken from the heap (all of it when no
# SQLITE_CONFIG_PAGECACHE buffer is configured, as in Python's sqlite3).
SQLITE_STATUS_PAGECACHE_OVERFLOW = 2
SQLITE_STATUS_MEMORY_USED = 0


def slope_mib_per_min(points: list[tuple[float, int]]) -> float:
    """Least-squares slope of (seconds, bytes) points, in MiB per minute."""
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_r = sum(r for _, r in points) / n
    var = sum((t - mean_t) ** 2 for t, _ in points)
    if var == 0:
        return 0.0
    cov = sum((t - mean_t) * (r - mean_r) for t, r in points)
    return cov / var / MIB * 60


# "Flat", the soak's criterion. The first part of the run is warm-up (imports
# done on first use, the series and limiter caches filling, the malloc arenas of
# the threads, SQLite's prepared statements on each pooled connection, the SQLite
# writer's page cache filling up to its bound): the first third, or as the caller
# says (the full soak: 5 minutes, then 10 judged, see test_soak.py). Over the
# rest, the least-squares slope of RSS must stay under FLAT_MIB_PER_MIN, and the
# level of the last minute (its median, so that one sample caught between a
# burst and a malloc_trim does not decide) within FLAT_END_MIB of the level of the
# first minute after warm-up. A leak of 2 MiB/min fails both over 10 minutes;
# a slope alone could pass a process that steps up once late in the run.
FLAT_MIB_PER_MIN = 1.0
FLAT_END_MIB = 8.0
LEVEL_WINDOW_S = 60.0


@dataclass(frozen=True)
class Flatness:
    """RSS after warm-up: levels (medians over a minute), slope, and the verdict."""

    start_mib: float
    warm_mib: float
    end_mib: float
    peak_mib: float
    slope_mib_per_min: float
    settled_points: int

    @property
    def growth_mib(self) -> float:
        return self.end_mib - self.warm_mib

    def problems(self) -> list[str]:
        """Why RSS is not flat; empty when it is."""
        found = []
        if not self.slope_mib_per_min < FLAT_MIB_PER_MIN:
            found.append(
                f"RSS grows {self.slope_mib_per_min:+.2f} MiB/min after warm-up "
                f"(limit {FLAT_MIB_PER_MIN} MiB/min)"
            )
        if not self.growth_mib < FLAT_END_MIB:
            found.append(
                f"RSS ends {self.growth_mib:+.1f} MiB above its level after warm-up "
                f"({self.warm_mib:.1f} -> {self.end_mib:.1f} MiB, limit {FLAT_END_MIB} MiB)"
            )
        return found

    def describe(self) -> str:
        return (
            f"RSS start {self.start_mib:.1f} MiB, after warm-up {self.warm_mib:.1f} MiB, "
            f"end {self.end_mib:.1f} MiB ({self.growth_mib:+.1f}), peak {self.peak_mib:.1f} MiB, "
            f"slope {self.slope_mib_per_min:+.2f} MiB/min over {self.settled_points} samples"
        )


def flatness(points: list[tuple[float, int]], warmup_s: float | None = None) -> Flatness:
    """Judge (seconds, RSS bytes) samples taken at a steady period. Warm-up: the
    samples before ``warmup_s`` (default: the first third). Needs at least two
    samples after warm-up."""
    if warmup_s is None:
        settled = points[len(points) // 3 :]
    else:
        settled = [(t, r) for t, r in points if t >= warmup_s]
    if len(settled) < 2:
        raise ValueError(f"too few RSS samples to judge: {len(points)}")
    began, ended = settled[0][0], settled[-1][0]
    first = [r for t, r in settled if t - began <= LEVEL_WINDOW_S]
    last = [r for t, r in settled if ended - t <= LEVEL_WINDOW_S]
    return Flatness(
        start_mib=points[0][1] / MIB,
        warm_mib=statistics.median(first) / MIB,
        end_mib=statistics.median(last) / MIB,
        peak_mib=max(r for _, r in points) / MIB,
        slope_mib_per_min=slope_mib_per_min(settled),
        settled_points=len(settled),
    )


# SQLite only: the history a collector in its steady state has. The writer's hot
# set is one leaf page of ix_samples_series_time per active series (about 250
# entries a page): on an empty database the series share leaf pages, and each
# write group touches more distinct pages as the index grows, until every
# series' newest entries sit on a page of their own -- about 20 minutes at the
# soak's rate (one sample per series every 5 s), 40 at a real agent's. Over
# that time the writer's page cache (up to 12,000 pages, 47 MiB, for 200 agents:
# under the 64 MiB sqlite_cache_mib) grows with it, and so does RSS: glibc keeps
# the pages freed when another connection's commit empties the cache (WAL) for
# the next transaction. Measured in the 10-minute soak that was +2.6..3.5 MiB/min
# of a bounded warm-up, not a leak (README "Reliability"). 400 samples per series
# of history (1.6 leaf pages each) put every series' tail on its own page before
# the run begins. They are dated before the run and deleted before the audit.
SEED_SAMPLES_PER_SERIES = 400


def swarm_series(samples: int) -> list[tuple[str, Labels]]:
    """(name, labels) of the series each agent of tests/e2e/swarm.py sends (SyntheticSource)."""
    return [(f"synthetic.m{i % 10}", labels_of(instance=str(i // 10))) for i in range(samples)]


def seed_history(
    db_url: str,
    dealer_id: str,
    agent_ids: list[str],
    samples: int,
    *,
    per_series: int,
    interval_ms: int,
    end_ms: int,
) -> int:
    """Register the swarm's agents and their series, and give each series ``per_series``
    samples ``interval_ms`` apart, the last before ``end_ms``. Returns the rows inserted.

    Written series by series, as a long-running collector's index looks: each series'
    entries together. SQLite only (the raw executemany)."""
    store = open_store(db_url, pool_size=1)
    try:
        when = datetime.fromtimestamp(end_ms / 1000, UTC)
        for agent_id in agent_ids:
            info = AgentInfo(agent_id, dealer_id, agent_id, "seed", "seed")
            store.register_agent(info, when)
        wanted = {
            (dealer_id, agent_id, name, labels): "percent"
            for agent_id in agent_ids
            for name, labels in swarm_series(samples)
        }
        with store.engine.begin() as connection:
            ids = sorted(resolve_missing(connection, wanted).values())
            raw = connection.connection.driver_connection
            assert isinstance(raw, sqlite3.Connection), "seed_history is for SQLite"
            first_ms = end_ms - per_series * interval_ms
            raw.executemany(
                "INSERT INTO samples (series_id, time_ms, value) VALUES (?, ?, ?)",
                (
                    (series_id, first_ms + n * interval_ms, float(n % 100))
                    for series_id in ids
                    for n in range(per_series)
                ),
            )
        return len(ids) * per_series
    finally:
        store.close()


def delete_history(db_url: str, before_ms: int) -> int:
    """Delete the seeded samples (dated before ``before_ms``); the rows deleted."""
    store = open_store(db_url, pool_size=1)
    try:
        with store.engine.begin() as connection:
            deleted = connection.execute(delete(samples).where(samples.c.time_ms < before_ms))
            return deleted.rowcount
    finally:
        store.close()


def limit_arenas(count: int) -> None:
    """glibc's MALLOC_ARENA_MAX, set from inside the process before threads start."""
    name = ctypes.util.find_library("c")
    if name is None or ctypes.CDLL(name).mallopt(M_ARENA_MAX, count) != 1:
        raise SystemExit(f"--arena-max {count}: mallopt(M_ARENA_MAX) failed or is not glibc")


def _sqlite_memory() -> tuple[ctypes.CDLL | None]:
    name = ctypes.util.find_library("sqlite3")
    if name is None:
        return (None,)
    lib = ctypes.CDLL(name)
    lib.sqlite3_memory_used.restype = ctypes.c_int64
    lib.sqlite3_memory_highwater.restype = ctypes.c_int64
    lib.sqlite3_memory_highwater.argtypes = [ctypes.c_int]
    lib.sqlite3_status64.argtypes = [
        ctypes.c_int,
        ctypes.POINTER(ctypes.c_int64),
        ctypes.POINTER(ctypes.c_int64),
        ctypes.c_int,
    ]
    return (lib,)


def _sqlite_page_cache_bytes(lib: ctypes.CDLL | None) -> int:
    """Bytes of SQLite's page caches, all connections (the rest of its heap is mostly
    prepared statements and schemas). -1 when unknown."""
    if lib is None:
        return -1
    current, highwater = ctypes.c_int64(), ctypes.c_int64()
    status = lib.sqlite3_status64(
        SQLITE_STATUS_PAGECACHE_OVERFLOW, ctypes.byref(current), ctypes.byref(highwater), 0
    )
    return current.value if status == 0 else -1


def _sqlite_peaks(lib: ctypes.CDLL | None) -> str:
    """SQLite's heap and page-cache peaks since the previous call (the high-water marks are
    reset): the page cache of a transaction is freed when the next one finds the database
    changed by another connection (WAL), so a sample of the current size misses it."""
    if lib is None:
        return "sqlite peaks ?"
    peaks = []
    for name, op in (
        ("heap", SQLITE_STATUS_MEMORY_USED),
        ("pages", SQLITE_STATUS_PAGECACHE_OVERFLOW),
    ):
        current, highwater = ctypes.c_int64(), ctypes.c_int64()
        lib.sqlite3_status64(op, ctypes.byref(current), ctypes.byref(highwater), 1)
        peaks.append(f"{name}={highwater.value / MIB:.1f}")
    return "sqlite peaks " + " ".join(peaks)


class _MallInfo2(ctypes.Structure):
    """glibc's struct mallinfo2 (all arenas together)."""

    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",  # bytes taken from the system with brk/mmap for arenas
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",  # bytes in chunks mmap'd on their own (large allocations)
            "usmblks",
            "fsmblks",
            "uordblks",  # bytes allocated (live) in the arenas
            "fordblks",  # bytes free in the arenas (fragmentation when it grows)
            "keepcost",
        )
    ]


def _mallinfo() -> str:
    """glibc's live / free / mmap'd bytes, in MiB; empty where not glibc 2.33+."""
    name = ctypes.util.find_library("c")
    if name is None:
        return ""
    try:
        function = ctypes.CDLL(name).mallinfo2
    except AttributeError:
        return ""
    function.restype = _MallInfo2
    info = function()
    return (
        f"malloc live={info.uordblks / MIB:.1f} free={info.fordblks / MIB:.1f} "
        f"arenas={info.arena / MIB:.1f} mmapped={info.hblkhd / MIB:.1f}"
    )


def _malloc_heaps() -> str:
    """Per glibc arena (malloc_info): system MiB / free MiB, and CPython's pymalloc arenas."""
    name = ctypes.util.find_library("c")
    if name is None:
        return ""
    libc = ctypes.CDLL(name)
    libc.fopen.restype = ctypes.c_void_p
    libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    libc.fclose.argtypes = [ctypes.c_void_p]
    libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
    with tempfile.NamedTemporaryFile(suffix=".xml") as out:
        handle = libc.fopen(out.name.encode(), b"w")
        libc.malloc_info(0, handle)
        libc.fclose(handle)
        document = Path(out.name).read_text()
    heaps = []
    for heap in ElementTree.fromstring(document).iter("heap"):
        current = sum(
            int(s.get("size", 0)) for s in heap.iter("system") if s.get("type") == "current"
        )
        free = sum(int(t.get("size", 0)) for t in heap.iter("total"))
        heaps.append(f"{heap.get('nr')}:{current / MIB:.0f}/{free / MIB:.0f}")
    return "heaps " + " ".join(heaps) + f" {_pymalloc_arenas()}"


def _pymalloc_arenas() -> str:
    """CPython's object arenas (sys._debugmallocstats, written to fd 2: caught in a file)."""
    with tempfile.TemporaryFile() as out:
        sys.stderr.flush()
        saved = os.dup(2)
        try:
            os.dup2(out.fileno(), 2)
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        out.seek(0)
        text = out.read().decode(errors="replace")
    names = {
        "arenas allocated current": "arenas",
        "bytes in allocated blocks": "live",
        "bytes in available blocks": "free",
    }
    found: dict[str, int] = {}
    for line in text.splitlines():
        key, _, value = line.partition("=")
        short = names.get(key.strip("# ").strip())
        if short is not None:
            found[short] = int(value.strip().replace(",", ""))
    if len(found) < len(names):
        return "pymalloc ?"
    return (
        f"pymalloc arenas={found['arenas']} live={found['live'] / MIB:.1f} "
        f"free={found['free'] / MIB:.1f}"
    )


def _smaps_rollup() -> str:
    """Anonymous, file-backed and shared-memory RSS of this process, in MiB."""
    wanted = ("Rss", "Anonymous", "Private_Dirty")
    found: dict[str, int] = {}
    with contextlib.suppress(OSError), open("/proc/self/smaps_rollup") as rollup:
        for line in rollup:
            key, _, rest = line.partition(":")
            if key in wanted:
                found[key] = int(rest.split()[0])
    with contextlib.suppress(OSError), open("/proc/self/status") as status:
        for line in status:
            key, _, rest = line.partition(":")
            if key in ("RssAnon", "RssFile", "RssShmem"):
                found[key] = int(rest.split()[0])
    return " ".join(f"{key}={kib / 1024:.1f}" for key, kib in found.items())


def _db_files(db_url: str) -> str:
    """Sizes of the SQLite database, WAL and -shm files, in MiB."""
    if not db_url.startswith("sqlite:///"):
        return ""
    path = Path(db_url.removeprefix("sqlite:///"))
    sizes = []
    for suffix in ("", "-wal", "-shm"):
        candidate = path.with_name(path.name + suffix)
        with contextlib.suppress(OSError):
            sizes.append(f"db{suffix}={candidate.stat().st_size / MIB:.1f}")
    return " ".join(sizes)


class ObjectCounts:
    """gc-tracked objects by type; logs the types that grew since the first count."""

    def __init__(self) -> None:
        self._baseline: collections.Counter[str] | None = None

    def log_growth(self) -> None:
        counts = collections.Counter(type(o).__name__ for o in gc.get_objects())
        if self._baseline is None:
            self._baseline = counts
            logger.warning("objects: %d tracked (baseline)", sum(counts.values()))
            return
        grown = counts.copy()
        grown.subtract(self._baseline)
        top = ", ".join(f"{name} {delta:+d}" for name, delta in grown.most_common(12) if delta)
        logger.warning("objects: %d tracked; grew: %s", sum(counts.values()), top)


def watch(
    stop: threading.Event,
    period_s: float,
    trace_every_s: float,
    trim_every_s: float,
    started: list[CollectorServer],
    points: list[tuple[float, int]],
    detail: Detail | None = None,
) -> None:
    """Log memory figures every ``period_s`` until ``stop``; allocation diffs if tracing.

    With ``detail``: glibc's malloc figures, anonymous/file RSS, the database
    files, the pool, and every ``detail.objects_every_s`` the object types that grew.

    Appends (seconds, RSS bytes) to ``points``; with ``trim_every_s`` trims the
    malloc arenas that often and logs RSS after the trim too.
    """
    (lib,) = _sqlite_memory()
    process = psutil.Process()
    began = time.monotonic()
    baseline: tracemalloc.Snapshot | None = None
    next_trace = began + trace_every_s
    next_trim = began + trim_every_s
    objects = ObjectCounts()
    seen_texts: set[str] = set()
    next_objects = began + (detail.objects_every_s if detail else 1e9)
    while not stop.wait(period_s):  # bounded by stop
        if not started:  # the port answers a moment before serve() records the server
            continue
        elapsed = time.monotonic() - began
        stats = started[0].writer_stats()
        sqlite_used = lib.sqlite3_memory_used() if lib is not None else -1
        traced = tracemalloc.get_traced_memory()[0] if tracemalloc.is_tracing() else 0
        rss = process.memory_info().rss
        points.append((elapsed, rss))
        logger.warning(
            "t=%.0f rss=%.1f sqlite=%.1f (pages %.1f) python=%.1f blocks=%d threads=%d "
            "queued=%d written=%d",
            elapsed,
            rss / MIB,
            sqlite_used / MIB,
            _sqlite_page_cache_bytes(lib) / MIB,
            traced / MIB,
            sys.getallocatedblocks(),
            process.num_threads(),
            stats.queued_samples,
            stats.samples_written,
        )
        if detail is not None:
            logger.warning(
                "detail t=%.0f %s | %s | %s | %s | %s | pool %s",
                elapsed,
                _sqlite_peaks(lib),
                _mallinfo(),
                _smaps_rollup(),
                _malloc_heaps(),
                _db_files(detail.db_url),
                detail.pool_status(),
            )
            if time.monotonic() >= next_objects:
                next_objects += detail.objects_every_s
                objects.log_growth()
                detail.log_new_texts(seen_texts)
        if time.monotonic() >= next_trim:
            next_trim += trim_every_s
            trim_started = time.perf_counter()
            released = release_free_memory()
            logger.warning(
                "trim: released=%s in %.1f ms, rss after=%.1f",
                released,
                (time.perf_counter() - trim_started) * 1000,
                process.memory_info().rss / MIB,
            )
        if tracemalloc.is_tracing() and time.monotonic() >= next_trace:
            next_trace += trace_every_s
            snapshot = tracemalloc.take_snapshot()
            if baseline is None:
                baseline = snapshot
                continue
            for stat in snapshot.compare_to(baseline, "lineno")[:15]:
                logger.warning("grew: %s", stat)


@dataclass(frozen=True)
class Detail:
    """What ``--detail`` logs besides the memory line."""

    db_url: str
    objects_every_s: float
    stores: list[SQLAlchemyMetricStore]

    texts: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)

    def pool_status(self) -> str:
        return self.stores[0].engine.pool.status() if self.stores else "-"

    def count_statements(self, store: SQLAlchemyMetricStore) -> None:
        """Count the distinct SQL texts run through SQLAlchemy: each one is a prepared
        statement of its own on every connection that runs it (sqlite3 keeps 128)."""

        def before(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
            self.texts[statement] += 1

        event.listen(store.engine, "before_cursor_execute", before)

    def log_new_texts(self, seen: set[str]) -> None:
        new = [text for text in list(self.texts) if text not in seen]
        seen.update(new)
        logger.warning("sql texts: %d distinct, %d new", len(seen), len(new))
        for text in new[:8]:
            logger.warning("new sql: %s", " ".join(text.split())[:160])


async def serve(
    db_url: str,
    port: int,
    stop: asyncio.Event,
    started: list[CollectorServer],
    sqlite_cache_mib: int,
    stores: list[SQLAlchemyMetricStore],
    detail: Detail | None = None,
) -> None:
    """The collector as ``dealerpulse collector`` runs it (one process), until ``stop``."""
    settings = CollectorSettings.from_values({"db": db_url, "listen": f"127.0.0.1:{port}"})
    store = await asyncio.to_thread(
        lambda: open_store(db_url, pool=settings.pool_settings(), sqlite_cache_mib=sqlite_cache_mib)
    )
    stores.append(store)
    if detail is not None:
        detail.count_statements(store)
    server = CollectorServer(store, settings.listen, settings, SystemClock())
    await server.start()
    started.append(server)
    try:
        await stop.wait()
    finally:
        await server.stop(settings.shutdown_grace_s)
        await asyncio.to_thread(store.close)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--agents", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=180)
    parser.add_argument("--interval", type=float, default=2.0)
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--db", default="")
    parser.add_argument("--period", type=float, default=5.0)
    parser.add_argument("--tracemalloc-every", type=float, default=0.0)
    parser.add_argument("--disconnect-every", type=float, default=0.0)
    parser.add_argument("--shared-connection", action="store_true")
    parser.add_argument("--trim-every", type=float, default=0.0)
    parser.add_argument("--arena-max", type=int, default=0)
    parser.add_argument("--sqlite-cache-mib", type=int, default=64)
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        metavar="SAMPLES_PER_SERIES",
        help=f"SQLite: history per series before the run (the soak uses {SEED_SAMPLES_PER_SERIES})",
    )
    parser.add_argument(
        "--detail",
        type=float,
        default=0.0,
        metavar="OBJECTS_EVERY_S",
        help="log malloc/smaps/db-file/pool figures each period, object type growth this often",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    if args.arena_max > 0:
        limit_arenas(args.arena_max)
    tmp = Path(tempfile.mkdtemp(prefix="soak-profile-"))
    db_url = args.db or f"sqlite:///{tmp / 'soak.db'}"
    store = open_store(db_url, pool_size=1)
    dealer, token = add_dealer(store, "Profile Motors")
    store.close()
    if args.seed > 0:
        seeded_at = time.perf_counter()
        rows = seed_history(
            db_url,
            dealer.dealer_id,
            agent_ids(args.agents),
            args.samples,
            per_series=args.seed,
            interval_ms=int(args.interval * 1000),
            end_ms=int(time.time() * 1000) - 60_000,
        )
        logger.warning("seeded %d samples in %.1f s", rows, time.perf_counter() - seeded_at)
    if args.tracemalloc_every > 0:
        tracemalloc.start(1)
    from e2e_procs import free_port, serving, wait_for

    port = free_port()
    stop_watch = threading.Event()
    started: list[CollectorServer] = []
    points: list[tuple[float, int]] = []
    stores: list[SQLAlchemyMetricStore] = []
    detail = Detail(db_url, args.detail, stores) if args.detail > 0 else None
    watcher = threading.Thread(
        target=watch,
        args=(
            stop_watch,
            args.period,
            args.tracemalloc_every or 1e9,
            args.trim_every or 1e9,
            started,
            points,
            detail,
        ),
        daemon=True,
    )

    async def run() -> None:
        stop = asyncio.Event()
        collector = asyncio.create_task(
            serve(db_url, port, stop, started, args.sqlite_cache_mib, stores, detail)
        )
        await asyncio.to_thread(wait_for, lambda: serving(port), "the collector to serve")
        extra: tuple[str, ...] = ("--disconnect-every", str(args.disconnect_every))
        if not args.shared_connection:
            extra = ("--connection-per-agent", *extra)
        swarm, _ = start_swarm(
            port,
            token,
            args.agents,
            tmp,
            interval_s=args.interval,
            samples=args.samples,
            extra=extra,
        )
        watcher.start()
        # SIGTERM/SIGINT end the run early, still stopping the swarm.
        interrupted = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            asyncio.get_running_loop().add_signal_handler(sig, interrupted.set)
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(interrupted.wait(), args.seconds)
        finally:
            await asyncio.to_thread(swarm.terminate, 120)
            stop_watch.set()
            stop.set()
            await collector

    asyncio.run(run())
    log_summary(points)
    logger.warning("files in %s", tmp)


def log_summary(points: list[tuple[float, int]]) -> None:
    """The soak's figures and verdict (:func:`flatness`: the first third is warm-up)."""
    if len(points) < 6:
        logger.warning("too few points to judge: %s", len(points))
        return
    judged = flatness(points)
    logger.warning(
        "summary: %s; %s",
        judged.describe(),
        "; ".join(judged.problems()) or "flat",
    )


if __name__ == "__main__":
    main()
