"""Soak: many agents stream to one collector for a while; memory flat, nothing lost.

Every agent has its own TCP connection, through a relay that resets a random
agent's connection every ``disconnect_every_s`` on average (tests/e2e/swarm.py).
The short version (30 agents, 15 s) runs in the normal suite and checks the
delivery audit under disconnects; the full one (200 agents, 10 minutes) only with
``DEALERPULSE_SOAK=1 pytest tests/reliability -m soak``. On SQLite the full one
starts from a steady-state database (history seeded per series, see
soak_profile.SEED_SAMPLES_PER_SERIES; ``DEALERPULSE_SOAK_SEED=0`` for an empty one).

**Flat memory**, the criterion (:func:`soak_profile.flatness`): the collector's
RSS (with its children) is sampled every 2 s; the first part of the run is
warm-up (the full soak: 5 minutes at full load, then 10 judged; the short one:
its first third); over the rest the least-squares slope must be under 1 MiB/min AND the
level of the last minute (a median) within 8 MiB of the level of the first
minute after warm-up. The figures and every sample are printed (``-s``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest
from e2e_procs import Proc, free_port, reap_all, start_collector, wait_for

from collector.admin import add_dealer
from collector.store import open_store

from .soak_profile import (
    MIB,
    SEED_SAMPLES_PER_SERIES,
    delete_history,
    flatness,
    seed_history,
)
from .swarm_check import agent_ids, audit, committed_total, start_swarm

pytestmark = pytest.mark.slow
SAMPLE_EVERY_S = 2.0
MAX_RSS_BYTES = 1024 * MIB


@pytest.fixture(autouse=True)
def _no_process_outlives_its_test() -> Iterator[None]:
    yield
    reap_all()


def throttled(condition: Callable[[], bool], period_s: float) -> Callable[[], bool]:
    """``condition``, evaluated at most once per ``period_s`` (the last answer in between)."""
    last = [float("-inf"), False]

    def check() -> bool:
        now = time.monotonic()
        if now - last[0] >= period_s:
            last[:] = [now, condition()]
        return bool(last[1])

    return check


def sample_rss(collector: Proc, duration_s: float) -> list[tuple[float, int]]:
    """(seconds since start, RSS bytes of the collector and its children) every 2 s."""
    process = psutil.Process(collector.popen.pid)
    began = time.monotonic()
    points: list[tuple[float, int]] = []
    while (elapsed := time.monotonic() - began) < duration_s:  # bounded by duration_s
        assert collector.alive(), collector.output()
        family = [process, *process.children(recursive=True)]
        points.append((elapsed, sum(p.memory_info().rss for p in family)))
        time.sleep(SAMPLE_EVERY_S)  # the sampling period itself, not a synchronisation
    return points


def soak(
    db_url: str,
    tmp: Path,
    agents: int,
    duration_s: float,
    interval_s: float,
    samples: int,
    *,
    disconnect_every_s: float,
    judge_slope: bool,
    seed_per_series: int = 0,
    warmup_s: float | None = None,
) -> None:
    """``seed_per_series``: SQLite history per series first (soak_profile.seed_history),
    deleted again before the audit. ``warmup_s``: the part of ``duration_s`` memory
    is not judged on (default: the first third)."""
    store = open_store(db_url, pool_size=2)
    dealer, token = add_dealer(store, "Soak Motors")
    ids = agent_ids(agents)
    # Every sample the swarm sends is dated after this; every seeded one before it.
    history_end_ms = int(time.time() * 1000) - 60_000
    if seed_per_series:
        seeded = seed_history(
            db_url,
            dealer.dealer_id,
            ids,
            samples,
            per_series=seed_per_series,
            interval_ms=int(interval_s * 1000),
            end_ms=history_end_ms,
        )
        print(f"\nseeded {seeded} samples of history ({seed_per_series} per series)")
    port = free_port()
    collector = start_collector(db_url, port, tmp)
    cutting = ("--connection-per-agent", "--disconnect-every", str(disconnect_every_s))
    swarm, result = start_swarm(
        port, token, agents, tmp, interval_s=interval_s, samples=samples, extra=cutting
    )
    try:
        # Checked once a second: 200 agents are 200 queries, competing with the collector.
        delivered = throttled(lambda: committed_total(store, ids) >= agents, period_s=1.0)
        wait_for(delivered, "the agents' first batches", timeout_s=180)
        points = sample_rss(collector, duration_s)
    finally:
        assert swarm.terminate(timeout_s=120) == 0, swarm.output()
        assert collector.terminate(timeout_s=60) == 0, collector.output()
    if seed_per_series:
        delete_history(db_url, history_end_ms)
    # The audit asserts no loss (every acked batch stored) and no duplicates
    # (rows stored = what the batch records say, once per (agent, seq)).
    totals = audit(store, result, ids)
    store.close()
    cuts = int(Path(f"{result}.disconnects").read_text())
    memory = flatness(points, warmup_s)
    print(
        f"\nsoak {agents} agents x {duration_s:.0f} s, {cuts} connections reset: "
        f"{totals.stored_batches} batches, {totals.stored_samples} samples stored "
        f"({totals.stored_samples / duration_s:.0f}/s over the sampled time), "
        f"0 lost, 0 duplicated, spooled {totals.spooled_samples}, "
        f"dropped {totals.dropped_samples}, acks in flight at stop {totals.acks_in_flight}; "
        f"collector {memory.describe()}; {'; '.join(memory.problems()) or 'flat'}"
    )
    print(f"RSS every {SAMPLE_EVERY_S:g} s (MiB): " + " ".join(f"{r / MIB:.0f}" for _, r in points))
    assert cuts > 0, "the relay reset no connection: the run tested no disconnect"
    assert totals.dropped_samples == 0
    assert memory.peak_mib * MIB < MAX_RSS_BYTES, memory.describe()
    if judge_slope:
        assert not memory.problems(), memory.problems()


def rss_series(mib_at: Callable[[float], float], minutes: float) -> list[tuple[float, int]]:
    """Samples every 2 s of an RSS curve given in MiB as a function of seconds."""
    count = int(minutes * 60 / SAMPLE_EVERY_S)
    return [(i * SAMPLE_EVERY_S, int(mib_at(i * SAMPLE_EVERY_S) * MIB)) for i in range(count)]


def jitter(t: float) -> float:
    """Deterministic noise of +-6 MiB, like the RSS of a collector trimming every 10 s."""
    return 6.0 * ((int(t) * 7919) % 13 - 6) / 6


def test_the_flat_criterion_passes_a_warm_up_then_a_noisy_plateau() -> None:
    # Fast climb for 2 minutes (warm-up), then flat with noise.
    curve = rss_series(lambda t: 220 + min(t, 120) / 3 + jitter(t), minutes=10)
    assert flatness(curve).problems() == []


@pytest.mark.parametrize("leak_mib_per_min", [1.5, 3.0])
def test_the_flat_criterion_fails_a_steady_leak(leak_mib_per_min: float) -> None:
    curve = rss_series(lambda t: 250 + leak_mib_per_min * t / 60 + jitter(t), minutes=10)
    problems = flatness(curve).problems()
    assert any("MiB/min" in p for p in problems), problems


def test_the_flat_criterion_fails_a_late_step_a_slope_alone_would_forgive() -> None:
    # Flat, then 10 MiB more for the last 40 s: the slope is +0.77 MiB/min,
    # under the limit; the level of the last minute is not.
    curve = rss_series(lambda t: 250 + (10 if t > 560 else 0), minutes=10)
    judged = flatness(curve)
    assert judged.slope_mib_per_min < 1.0
    assert [p for p in judged.problems() if "ends" in p], judged.problems()


def test_soak_short_30_agents_15_s(sqlite_url: str, tmp_path: Path) -> None:
    # Too short to judge memory (all warm-up); it checks delivery under disconnects:
    # about 30 resets, one per agent on average.
    soak(
        sqlite_url,
        tmp_path,
        agents=30,
        duration_s=15,
        interval_s=0.5,
        samples=50,
        disconnect_every_s=0.5,
        judge_slope=False,
    )


# The full soak judges memory over SOAK_MINUTES at full load, after a warm-up of
# SOAK_WARMUP_MINUTES at the same load. Why 5: on SQLite the writer's page cache
# fills up to its bound (sqlite_cache_mib, 64 MiB) in the first 5-6 minutes of a
# new collector process, at the rate the database grows (new index leaves and
# table pages: about 6 MiB/min here), then recycles its own pages. soak_profile
# (2026-11-27): SQLite's heap 52 -> 67 MiB by minute 5, flat after; RSS flat at
# 306-310 MiB over minutes 6-10. Judged from minute 3.3 (a third of 10) that
# bounded fill read as +1.65 MiB/min.
SOAK_MINUTES = float(os.environ.get("DEALERPULSE_SOAK_MINUTES", "10"))
SOAK_WARMUP_MINUTES = float(os.environ.get("DEALERPULSE_SOAK_WARMUP_MINUTES", "5"))
# The rate of each agent. A real agent sends about 60 samples every 10 s (host
# metrics, API traffic, probes); the soak sends twice that, 60 every 5 s: 200
# agents make 2,400 samples/s, a rate the collector sustains on the 2-core CI
# machine while other suites run. At 100 samples every 2 s (8 times a real
# agent, 10,000/s) it stored about 9,100/s: behind all along, with 513,600
# samples left in the agents' spools at the stop; a growing backlog is not what
# the soak is about (bench/ measures throughput).
AGENT_INTERVAL_S = 5.0
AGENT_SAMPLES = 60
# SQLite history per series before the run (0: an empty database, to see the hot set form).
SOAK_SEED = int(os.environ.get("DEALERPULSE_SOAK_SEED", str(SEED_SAMPLES_PER_SERIES)))


# The run itself, plus starting, stopping (up to 3 minutes) and the audit.
@pytest.mark.timeout((SOAK_WARMUP_MINUTES + SOAK_MINUTES) * 60 + 600)
@pytest.mark.soak
def test_soak_full_200_agents(db_url: str, tmp_path: Path) -> None:
    soak(
        db_url,
        tmp_path,
        agents=200,
        duration_s=(SOAK_WARMUP_MINUTES + SOAK_MINUTES) * 60,
        warmup_s=SOAK_WARMUP_MINUTES * 60,
        interval_s=AGENT_INTERVAL_S,
        samples=AGENT_SAMPLES,
        # 200 agents: each loses its connection about every 100 s.
        disconnect_every_s=0.5,
        judge_slope=True,
        # A collector's steady state, not its first 20 minutes on an empty
        # database: see soak_profile.SEED_SAMPLES_PER_SERIES (SQLite's hot set in
        # the collector's memory; PostgreSQL's is in the server's).
        seed_per_series=SOAK_SEED if db_url.startswith("sqlite") else 0,
    )
