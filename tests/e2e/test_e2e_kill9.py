"""kill -9 of the collector while 20 agents stream: nothing acked is lost, nothing duplicated."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from e2e_procs import REPO, Proc, env_for, free_port, reap_all, start_collector, wait_for

from collector.abc import MetricStore
from collector.admin import add_dealer
from collector.store import open_store

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _no_process_outlives_its_test() -> Iterator[None]:
    yield
    reap_all()


AGENTS = 20


def committed_total(store: MetricStore, agent_ids: list[str]) -> int:
    return sum(len(store.committed_batches(a)) for a in agent_ids)


def worker_pids(collector: Proc) -> list[int]:
    return [child.pid for child in psutil.Process(collector.popen.pid).children()]


@pytest.mark.parametrize("workers", [1, 2], ids=["1-process", "2-workers"])
def test_kill9_collector_under_20_agents_loses_and_duplicates_nothing(
    db_url: str, tmp_path: Path, workers: int
) -> None:
    """With --workers 2, kill -9 hits the parent only; its workers must notice and leave."""
    store = open_store(db_url)
    _, token = add_dealer(store, "Harbor Autos")
    port = free_port()
    agent_ids = [f"swarm-{i:03d}" for i in range(AGENTS)]
    result_path = tmp_path / "swarm.json"
    collector = start_collector(db_url, port, tmp_path, name="collector1", workers=workers)
    wait_for(lambda: len(worker_pids(collector)) >= workers - 1, "the worker processes")
    orphans = [psutil.Process(pid) for pid in worker_pids(collector) if workers > 1]
    (tmp_path / "spools").mkdir()
    swarm = Proc(
        [
            sys.executable,
            str(REPO / "tests" / "e2e" / "swarm.py"),
            "--collector",
            f"127.0.0.1:{port}",
            "--token",
            token,
            "--agents",
            str(AGENTS),
            "--dir",
            str(tmp_path / "spools"),
            "--interval",
            "0.2",
            "--samples",
            "100",
            "--out",
            str(result_path),
        ],
        tmp_path / "swarm.log",
        env_for(tmp_path),
    )
    try:
        wait_for(lambda: committed_total(store, agent_ids) >= 200, "traffic before the kill")
        collector.kill9()
        wait_for(
            lambda: not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in orphans),
            "orphaned workers to exit",
            timeout_s=30,
        )
        before_restart = committed_total(store, agent_ids)
        collector = start_collector(db_url, port, tmp_path, name="collector2", workers=workers)
        wait_for(
            lambda: committed_total(store, agent_ids) >= before_restart + 300,
            "traffic after the restart",
            timeout_s=90,
        )
    finally:
        assert swarm.terminate(timeout_s=60) == 0, swarm.output()
        assert collector.terminate() == 0, collector.output()

    result = json.loads(result_path.read_text())
    assert sorted(result) == agent_ids
    for agent_id, seen in result.items():
        committed = store.committed_batches(agent_id)
        # Every batch the agent saw acked is stored...
        assert set(seen["acked"]) <= set(committed), agent_id
        # ...exactly once: the row count equals what the batch records say was stored.
        assert store.count_samples(agent_id) == sum(committed.values()), agent_id
        # A batch can be committed while its ack is still on the way when the
        # agents stop: it stays spooled and its resend is answered DUPLICATE.
        pending = set(seen["pending_seqs"])
        in_both = pending & set(committed)
        everything = set(committed) | pending
        assert everything == set(range(1, max(everything) + 1)), agent_id
        # Conservation: generated = stored + spooled + dropped(reason).
        dropped = sum(seen["dropped"].values())
        assert (
            seen["generated"] + sum(committed[seq] for seq in in_both)
            == store.count_samples(agent_id) + seen["pending_samples"] + dropped
        ), agent_id
    store.close()
