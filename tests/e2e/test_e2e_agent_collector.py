"""End to end: the collector and the agent as separate processes, real databases."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_procs import Proc, free_port, reap_all, start_agent, start_collector, wait_for

from collector.admin import add_dealer
from collector.store import open_store

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _no_process_outlives_its_test() -> Iterator[None]:
    yield
    reap_all()


HOST_METRICS = {"cpu.percent", "memory.percent", "disk.used_percent", "process.count"}


def last_spooled_seq(agent: Proc) -> int:
    """The newest seq the agent process says it spooled (its DEBUG log)."""
    found = re.findall(r"spooled batch seq \d+\.\.(\d+)", agent.output())
    return int(found[-1]) if found else 0


def test_host_metrics_arrive_in_the_store(db_url: str, tmp_path: Path) -> None:
    store = open_store(db_url)
    _, token = add_dealer(store, "Sunrise Motors")
    port = free_port()
    collector = start_collector(db_url, port, tmp_path)
    agent = start_agent(port, token, tmp_path / "spool.db", tmp_path, interval_s=0.5)
    try:

        def arrived() -> bool:
            names = {s.name for s in store.latest_samples("sunrise-motors")}
            return names >= HOST_METRICS

        wait_for(arrived, "host metrics from the agent")
        [record] = store.list_agents("sunrise-motors")
        assert record.hostname
        latest = {s.name: s for s in store.latest_samples("sunrise-motors")}
        assert 0.0 <= latest["memory.percent"].value <= 100.0
        assert latest["process.count"].value >= 1
    finally:
        assert agent.terminate() == 0, agent.output()
        assert collector.terminate() == 0, collector.output()
        store.close()


def test_collector_down_agent_spools_restarts_and_drains(sqlite_url: str, tmp_path: Path) -> None:
    """Collector absent at first; the agent spools, is restarted while spooling, then
    drains everything once the collector comes: nothing lost, nothing duplicated."""
    store = open_store(sqlite_url)
    _, token = add_dealer(store, "Lakeside Cars")
    port = free_port()
    spool = tmp_path / "spool.db"

    agent = start_agent(port, token, spool, tmp_path, interval_s=0.1)
    wait_for(
        lambda: last_spooled_seq(agent) >= 10, "the agent to spool while the collector is down"
    )
    assert agent.terminate() == 0, agent.output()
    spooled_before_restart = last_spooled_seq(agent)

    agent = start_agent(port, token, spool, tmp_path, interval_s=0.1, log_name="agent2")
    wait_for(lambda: last_spooled_seq(agent) > spooled_before_restart, "spooling after restart")
    collector = start_collector(sqlite_url, port, tmp_path)
    try:
        wait_for(lambda: len(store.list_agents("lakeside-cars")) == 1, "the agent to connect")
        agent_id = store.list_agents("lakeside-cars")[0].agent_id
        wait_for(
            lambda: len(store.committed_batches(agent_id)) >= spooled_before_restart + 5,
            "the backlog to be delivered",
        )
    finally:
        assert agent.terminate() == 0, agent.output()

    from agent.spool import SqliteSpool

    local = SqliteSpool(spool, dealer_id="lakeside-cars")
    try:
        stats = local.stats()
        committed = store.committed_batches(agent_id)
        # Conservation: generated = stored + spooled + dropped.
        assert (
            stats.generated == store.count_samples(agent_id) + stats.samples + stats.dropped_total
        )
        assert stats.dropped_total == 0
        # seqs are dense from 1 across the restart: each batch is stored or still spooled.
        pending = {b.seq for b in local.pending(limit=100_000)}
        assert set(committed).isdisjoint(pending)
        everything = set(committed) | pending
        assert everything == set(range(1, max(everything) + 1))
        assert sum(committed.values()) == store.count_samples(agent_id)
    finally:
        local.close()
        assert collector.terminate() == 0, collector.output()
        store.close()
