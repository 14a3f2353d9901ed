"""Where the collector's memory goes under a swarm: a collector in this process, measured.

    python -m tests.reliability.soak_profile --agents 200 --seconds 180 \\
        [--interval 2 --samples 100] [--tracemalloc-every 30] [--disconnect-every 0.5] \\
        [--trim-every 15] [--arena-max 2] [--sqlite-cache-mib 64] [--db sqlite:///PATH]

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
after warm-up and the soak's verdict (:func:`flatness`). A debugging tool,
not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import ctypes.util
import logging
import signal
import statistics
import sys
import tempfile
import threading
import time
import tracemalloc
from dataclasses import dataclass
from pathlib import Path

import psutil

from collector.admin import add_dealer
from collector.server import CollectorServer
from collector.settings import CollectorSettings
from collector.store import open_store
from collector.store.memory import release_free_memory
from dealerpulse.clock import SystemClock

from .swarm_check import start_swarm

logger = logging.getLogger(__name__)
MIB = 1024 * 1024
M_ARENA_MAX = -8  # glibc's mallopt parameter number
# sqlite3_status() counter: page cache memory taken from the heap (all of it when no
# SQLITE_CONFIG_PAGECACHE buffer is configured, as in Python's sqlite3).
SQLITE_STATUS_PAGECACHE_OVERFLOW = 2


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


# "Flat", the soak's criterion. The first third of the run is warm-up (imports
# done on first use, the series and limiter caches filling, the malloc arenas of
# the threads, SQLite's prepared statements on each pooled connection). Over the
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


def flatness(points: list[tuple[float, int]]) -> Flatness:
    """Judge (seconds, RSS bytes) samples taken at a steady period (the first third is
    warm-up). Needs at least two samples after warm-up."""
    settled = points[len(points) // 3 :]
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


def watch(
    stop: threading.Event,
    period_s: float,
    trace_every_s: float,
    trim_every_s: float,
    started: list[CollectorServer],
    points: list[tuple[float, int]],
) -> None:
    """Log memory figures every ``period_s`` until ``stop``; allocation diffs if tracing.

    Appends (seconds, RSS bytes) to ``points``; with ``trim_every_s`` trims the
    malloc arenas that often and logs RSS after the trim too.
    """
    (lib,) = _sqlite_memory()
    process = psutil.Process()
    began = time.monotonic()
    baseline: tracemalloc.Snapshot | None = None
    next_trace = began + trace_every_s
    next_trim = began + trim_every_s
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


async def serve(
    db_url: str,
    port: int,
    stop: asyncio.Event,
    started: list[CollectorServer],
    sqlite_cache_mib: int,
) -> None:
    """The collector as ``dealerpulse collector`` runs it (one process), until ``stop``."""
    settings = CollectorSettings.from_values({"db": db_url, "listen": f"127.0.0.1:{port}"})
    store = await asyncio.to_thread(
        lambda: open_store(db_url, pool=settings.pool_settings(), sqlite_cache_mib=sqlite_cache_mib)
    )
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
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    if args.arena_max > 0:
        limit_arenas(args.arena_max)
    tmp = Path(tempfile.mkdtemp(prefix="soak-profile-"))
    db_url = args.db or f"sqlite:///{tmp / 'soak.db'}"
    store = open_store(db_url, pool_size=1)
    _, token = add_dealer(store, "Profile Motors")
    store.close()
    if args.tracemalloc_every > 0:
        tracemalloc.start(1)
    from e2e_procs import free_port, serving, wait_for

    port = free_port()
    stop_watch = threading.Event()
    started: list[CollectorServer] = []
    points: list[tuple[float, int]] = []
    watcher = threading.Thread(
        target=watch,
        args=(
            stop_watch,
            args.period,
            args.tracemalloc_every or 1e9,
            args.trim_every or 1e9,
            started,
            points,
        ),
        daemon=True,
    )

    async def run() -> None:
        stop = asyncio.Event()
        collector = asyncio.create_task(serve(db_url, port, stop, started, args.sqlite_cache_mib))
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
