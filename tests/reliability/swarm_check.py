"""Running a swarm of agents (a separate process) and auditing what reached the store.

The audit is the delivery guarantee, per agent: every acked batch is stored,
exactly once (rows = what the batch records say), seqs are dense across
stored and still-spooled batches, and generated = stored + spooled + dropped.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

from e2e_procs import REPO, Proc, env_for

from collector.abc import MetricStore

SWARM = REPO / "tests" / "e2e" / "swarm.py"


def agent_ids(count: int) -> list[str]:
    """The ids tests/e2e/swarm.py gives its agents."""
    return [f"swarm-{i:03d}" for i in range(count)]


def start_swarm(
    port: int,
    token: str,
    agents: int,
    tmp: Path,
    *,
    interval_s: float = 0.2,
    samples: int = 100,
    script: Path = SWARM,
    extra: tuple[str, ...] = (),
) -> tuple[Proc, Path]:
    """The swarm process and the file its result will be written to on SIGTERM."""
    spools = tmp / "spools"
    spools.mkdir(exist_ok=True)
    result = tmp / "swarm.json"
    args = [
        sys.executable,
        str(script),
        "--collector",
        f"127.0.0.1:{port}",
        "--token",
        token,
        "--agents",
        str(agents),
        "--dir",
        str(spools),
        "--interval",
        str(interval_s),
        "--samples",
        str(samples),
        "--out",
        str(result),
        *extra,
    ]
    return Proc(args, tmp / "swarm.log", env_for(tmp)), result


def committed_total(store: MetricStore, ids: list[str]) -> int:
    return sum(len(store.committed_batches(a)) for a in ids)


@dataclass(frozen=True)
class Audit:
    agents: int
    stored_batches: int
    stored_samples: int
    spooled_samples: int
    dropped_samples: int
    generated_samples: int
    # Batches committed whose ack the agent had not processed when it stopped.
    acks_in_flight: int


def audit(store: MetricStore, result_path: Path, ids: list[str]) -> Audit:
    """Check the delivery guarantee for every agent of the swarm; the totals."""
    result = json.loads(result_path.read_text())
    assert sorted(result) == ids
    totals = [0, 0, 0, 0, 0, 0]
    for agent_id, seen in result.items():
        committed = store.committed_batches(agent_id)
        stored = store.count_samples(agent_id)
        # Every batch the agent saw acked is stored...
        assert set(seen["acked"]) <= set(committed), agent_id
        # ...exactly once: the rows are what the batch records say was stored.
        assert stored == sum(committed.values()), agent_id
        pending = set(seen["pending_seqs"])
        # Committed but still spooled: the ack was on its way when the agent stopped
        # (a stop under load gives up waiting). Resent, it is acked DUPLICATE.
        in_flight = pending & set(committed)
        everything = set(committed) | pending
        assert everything == set(range(1, max(everything) + 1)), agent_id
        dropped = sum(seen["dropped"].values())
        spooled = seen["pending_samples"] - sum(committed[seq] for seq in in_flight)
        # Conservation: generated = stored + spooled + dropped(reason).
        assert seen["generated"] == stored + spooled + dropped, agent_id
        for index, value in enumerate(
            (len(committed), stored, spooled, dropped, seen["generated"], len(in_flight))
        ):
            totals[index] += value
    return Audit(len(result), *totals)
