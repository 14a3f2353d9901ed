"""PostgreSQL stopped and started again under load from 20 agents (a private cluster).

The collector keeps running through the outage and reconnects; the agents
spool while their batches are not acked and drain afterwards; in the end,
per agent, everything generated is stored or still spooled, exactly once.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_procs import free_port, reap_all, start_collector, wait_for

from collector.admin import add_dealer
from collector.store import open_store

from .private_pg import private_postgres
from .swarm_check import agent_ids, audit, committed_total, start_swarm

pytestmark = [pytest.mark.slow, pytest.mark.postgres]
AGENTS = 20


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


def test_postgres_restart_under_20_agents_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    with private_postgres() as cluster:
        store = open_store(cluster.url, pool_size=2)
        _, token = add_dealer(store, "Restart Motors")
        ids = agent_ids(AGENTS)
        port = free_port()
        collector = start_collector(cluster.url, port, tmp_path)
        swarm, result = start_swarm(port, token, AGENTS, tmp_path)
        try:
            wait_for(lambda: committed_total(store, ids) >= 200, "traffic before the outage")
            cluster.stop()
            down_at = len(collector.output())

            def outage_felt() -> bool:
                # Several failed write attempts: at least one group given up and
                # answered RETRY, so agents hold unacked batches in their spools.
                return collector.output()[down_at:].count("database unavailable") >= 6

            wait_for(outage_felt, "the collector to feel the outage", timeout_s=60)
            assert collector.alive(), collector.output()
            cluster.start()
            wait_for(cluster.accepting, "PostgreSQL to accept connections again")
            before = committed_total(store, ids)
            wait_for(
                lambda: committed_total(store, ids) >= before + 300,
                "traffic after the restart",
                timeout_s=120,
            )
            assert collector.alive(), collector.output()
        finally:
            assert swarm.terminate(timeout_s=90) == 0, swarm.output()
            assert collector.terminate() == 0, collector.output()
        totals = audit(store, result, ids)
        assert totals.dropped_samples == 0
        assert totals.stored_batches >= 500
        store.close()
