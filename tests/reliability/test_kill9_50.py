"""kill -9 of the collector while 50 agents stream: nothing acked lost, nothing duplicated.

tests/e2e/test_e2e_kill9.py does the same with 20 agents (and --workers 2);
this is the issue's load of 50 agents: SQLite in every run, PostgreSQL with the
soak runs (DEALERPULSE_SOAK=1).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_procs import free_port, reap_all, start_collector, wait_for

from collector.admin import add_dealer
from collector.store import open_store

from .swarm_check import agent_ids, audit, committed_total, start_swarm

pytestmark = pytest.mark.slow
AGENTS = 50


@pytest.fixture(autouse=True)
def _no_process_outlives_its_test() -> Iterator[None]:
    yield
    reap_all()


@pytest.fixture(autouse=True)
def _no_report_jobs(monkeypatch: pytest.MonkeyPatch) -> None:
    """The collectors started here make no periodic reports: not under test, and at
    start-up they would load the reporter and render two reports, seconds of CPU
    taken from the agents and the collector on a 2-core machine."""
    monkeypatch.setenv("REPORTS_ENABLED", "false")


def test_kill9_collector_under_50_agents_on_sqlite(
    start_migrated: None, sqlite_url: str, tmp_path: Path
) -> None:
    kill9_under_load(sqlite_url, tmp_path)


@pytest.mark.soak
@pytest.mark.postgres
def test_kill9_collector_under_50_agents_on_postgresql(
    start_migrated: None, pg_url: str, tmp_path: Path
) -> None:
    """About 30 s on the shared 2-core machine: with the soak runs, not in every `make test`."""
    kill9_under_load(pg_url, tmp_path)


def kill9_under_load(db_url: str, tmp_path: Path) -> None:
    store = open_store(db_url, pool_size=2)
    _, token = add_dealer(store, "Fifty Motors")
    ids = agent_ids(AGENTS)
    port = free_port()
    collector = start_collector(db_url, port, tmp_path, name="collector1")
    swarm, result = start_swarm(port, token, AGENTS, tmp_path, interval_s=0.5, samples=50)
    try:
        wait_for(lambda: committed_total(store, ids) >= 300, "traffic before the kill")
        collector.kill9()
        before_restart = committed_total(store, ids)
        collector = start_collector(db_url, port, tmp_path, name="collector2")
        wait_for(
            lambda: committed_total(store, ids) >= before_restart + 300,
            "traffic after the restart",
            timeout_s=120,
        )
    finally:
        assert swarm.terminate(timeout_s=90) == 0, swarm.output()
        assert collector.terminate() == 0, collector.output()
    totals = audit(store, result, ids)
    assert totals.agents == AGENTS and totals.dropped_samples == 0
    store.close()
