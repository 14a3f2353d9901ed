"""How long the alert jobs' last runs took: in JobStats and on the collector's /metrics.

A clock whose monotonic time steps forward at every reading makes each run
last exactly one step, so the figures are known without timing anything.
"""

from __future__ import annotations

import asyncio
import dataclasses
import urllib.request
from collections.abc import Callable

import pytest
from prometheus_client.parser import text_string_to_metric_families

from collector.alerting.jobs import DISPATCH_JOB, TICK_JOB, AlertJobs, JobSettings, JobStats
from collector.ingest.writer import WriterStats
from collector.metrics_http import CollectorMetrics, serve_metrics
from collector.store import SQLAlchemyMetricStore
from dealerpulse.clock import FakeClock

STEP_S = 0.25
WAIT_S = 20.0
NEVER_S = 3600.0
IDLE_WRITER = WriterStats(0, 0, 0, 0, 0, 0, 0, 0, 0.0)


class SteppingClock(FakeClock):
    """Every monotonic reading is ``step_s`` later than the one before."""

    def __init__(self, step_s: float) -> None:
        super().__init__()
        self._step_s = step_s

    def monotonic(self) -> float:
        self.advance(self._step_s)
        return super().monotonic()


async def _wait_until(condition: Callable[[], bool], what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_S
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


@pytest.mark.parametrize("job", [TICK_JOB, DISPATCH_JOB])
def test_the_duration_of_the_last_run_of_each_job_is_recorded(
    store: SQLAlchemyMetricStore, job: str
) -> None:
    # Only the job under test fires within the test: the two share the clock.
    fast, slow = 0.05, NEVER_S
    settings = JobSettings(
        alert_interval_s=fast if job == TICK_JOB else slow,
        dispatch_interval_s=fast if job == DISPATCH_JOB else slow,
    )
    jobs = AlertJobs(store.engine, SteppingClock(STEP_S), {}, (), settings)
    assert jobs.stats().last_tick_s is None and jobs.stats().last_dispatch_s is None

    async def scenario() -> JobStats:
        await jobs.start()
        try:
            runs: Callable[[], int] = (
                (lambda: jobs.stats().ticks)
                if job == TICK_JOB
                else (lambda: jobs.stats().dispatches)
            )
            await _wait_until(lambda: runs() >= 1, f"a run of {job}")
            return jobs.stats()
        finally:
            await jobs.stop()

    stats = asyncio.run(scenario())
    if job == TICK_JOB:
        assert (stats.last_tick_s, stats.last_dispatch_s) == (STEP_S, None)
    else:
        assert (stats.last_tick_s, stats.last_dispatch_s) == (None, STEP_S)


def _scrape(stats: JobStats) -> dict[str, list[tuple[dict[str, str], float]]]:
    metrics = serve_metrics("127.0.0.1:0", CollectorMetrics(lambda: IDLE_WRITER, lambda: stats))
    try:
        url = f"http://127.0.0.1:{metrics.port}/metrics"
        text = urllib.request.urlopen(url, timeout=10).read().decode()
    finally:
        metrics.stop()
    return {
        family.name: [(sample.labels, sample.value) for sample in family.samples]
        for family in text_string_to_metric_families(text)
    }


def test_metrics_show_the_last_run_duration_of_each_job() -> None:
    stats = dataclasses.replace(JobStats(ticks=3, dispatches=9), last_tick_s=1.5)
    families = _scrape(stats)
    assert families["dealerpulse_job_last_duration_seconds"] == [({"job": TICK_JOB}, 1.5)]

    families = _scrape(dataclasses.replace(stats, last_dispatch_s=0.125))
    assert sorted(families["dealerpulse_job_last_duration_seconds"], key=str) == sorted(
        [({"job": TICK_JOB}, 1.5), ({"job": DISPATCH_JOB}, 0.125)], key=str
    )


def test_before_any_run_there_is_no_duration_rather_than_a_zero() -> None:
    families = _scrape(JobStats())
    assert "dealerpulse_alert_ticks" in families
    assert "dealerpulse_job_last_duration_seconds" not in families
