"""Many agents in one process, for fault tests: real spools, real shippers, real gRPC.

    python tests/e2e/swarm.py --collector 127.0.0.1:PORT --token T --agents 20 \
        --dir DIR --interval 0.2 --samples 100 --out result.json

Each agent samples a synthetic source. Every ack an agent receives is recorded;
on SIGTERM the agents flush and stop, and the result file lists, per agent,
the acked seqs and the spool's final accounting.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import random
import signal
from pathlib import Path

from agent.abc import Source
from agent.codec import AckStatus
from agent.connection import Endpoint
from agent.runner import Agent
from agent.settings import AgentConfig
from agent.shipper import Shipper
from agent.spool import SqliteSpool
from dealerpulse.model import Sample, labels_of
from dealerpulse.tokens import parse_token


class SyntheticSource(Source):
    name = "synthetic"

    def __init__(self, samples: int, seed: int) -> None:
        self.samples = samples
        self.rng = random.Random(seed)

    def collect(self, now_ms: int) -> list[Sample]:
        return [
            Sample(
                f"synthetic.m{i % 10}",
                self.rng.random() * 100,
                "percent",
                now_ms,
                labels_of(instance=str(i // 10)),
            )
            for i in range(self.samples)
        ]


def build(args: argparse.Namespace, index: int, acked: dict[str, list[int]]) -> Agent:
    agent_id = f"swarm-{index:03d}"
    config = AgentConfig(
        collector=args.collector,
        token=args.token,
        interval_s=args.interval,
        spool_path=Path(args.dir) / f"{agent_id}.db",
        agent_id=agent_id,
        hostname=agent_id,
    )
    spool = SqliteSpool(
        config.spool_path, dealer_id=config.dealer_id, hostname=config.hostname, agent_id=agent_id
    )
    seqs = acked.setdefault(agent_id, [])

    def on_ack(seq: int, status: AckStatus, _samples: int) -> None:
        if status in (AckStatus.STORED, AckStatus.DUPLICATE):
            seqs.append(seq)

    shipper = Shipper(Endpoint(args.collector, args.token), spool, hostname=agent_id, on_ack=on_ack)
    return Agent(config, [SyntheticSource(args.samples, index)], spool, shipper)


def account(args: argparse.Namespace, agent_id: str, acked: list[int]) -> dict[str, object]:
    dealer_id = parse_token(args.token).dealer_id
    spool = SqliteSpool(Path(args.dir) / f"{agent_id}.db", dealer_id=dealer_id, agent_id=agent_id)
    try:
        stats = spool.stats()
        pending = [b.seq for b in spool.pending(limit=1_000_000)]
    finally:
        spool.close()
    return {
        "acked": sorted(set(acked)),
        "generated": stats.generated,
        "pending_seqs": pending,
        "pending_samples": stats.samples,
        "dropped": dict(stats.dropped),
    }


async def main_async(args: argparse.Namespace) -> None:
    acked: dict[str, list[int]] = {}
    agents = [build(args, i, acked) for i in range(args.agents)]
    loop = asyncio.get_running_loop()

    def stop_all() -> None:
        for one in agents:
            one.stop()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop_all)
    await asyncio.gather(*(a.run() for a in agents))
    result = {agent_id: account(args, agent_id, seqs) for agent_id, seqs in acked.items()}
    Path(args.out).write_text(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--collector", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--agents", type=int, default=20)
    parser.add_argument("--dir", required=True)
    parser.add_argument("--interval", type=float, default=0.2)
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
