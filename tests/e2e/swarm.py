"""Many agents in one process, for fault tests: real spools, real shippers, real gRPC.

    python tests/e2e/swarm.py --collector 127.0.0.1:PORT --token T --agents 20 \
        --dir DIR --interval 0.2 --samples 100 --out result.json [--disconnect-every 0.5]

Each agent samples a synthetic source. Every ack an agent receives is recorded;
on SIGTERM the agents flush and stop, and the result file lists, per agent,
the acked seqs and the spool's final accounting.

``--disconnect-every S`` puts a relay (:class:`CuttingProxy`) between the agents
and the collector that resets a random agent's connection every S seconds on
average (exponential gaps): batches in flight stay unacked, the agent
reconnects and resends, the collector sees the stream end mid-flight. The
number of cuts is written to ``OUT.disconnects``.

``--connection-per-agent`` gives every agent its own TCP connection, as agents in
separate processes have (by default gRPC shares one connection between the
channels of a process that have the same target and options).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import random
import signal
from pathlib import Path

from agent import connection
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


class CuttingProxy:
    """A TCP relay on 127.0.0.1 in front of the collector that drops connections at random.

    Every agent's channel is one TCP connection through the relay; a cut aborts
    both sides of one of them (a reset, as when a NAT or a link drops it), so the
    agent sees UNAVAILABLE and the collector sees its peer go away mid-stream.
    """

    def __init__(self, target: str, mean_gap_s: float) -> None:
        self._host, port = target.rsplit(":", 1)
        self._port = int(port)
        self._mean_gap_s = mean_gap_s
        self._pairs: list[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = []
        self.cuts = 0
        self._server: asyncio.Server | None = None
        self._relays: set[asyncio.Task[None]] = set()

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        return f"127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def cut_until(self, stopping: asyncio.Event) -> None:
        rng = random.Random(7)
        while not stopping.is_set():  # bounded by the swarm's lifetime
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), rng.expovariate(1.0 / self._mean_gap_s))
            if self._pairs and not stopping.is_set():
                for writer in self._pairs.pop(rng.randrange(len(self._pairs))):
                    writer.transport.abort()
                self.cuts += 1

    async def close(self) -> None:
        """Stop accepting, reset what is still connected, and wait for the relays to end."""
        assert self._server is not None, "close() before start()"
        self._server.close()
        for pair in self._pairs:
            for writer in pair:
                writer.transport.abort()
        await asyncio.gather(*self._relays, return_exceptions=True)
        await self._server.wait_closed()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._relays.add(task)
        task.add_done_callback(self._relays.discard)
        try:
            up_reader, up_writer = await asyncio.open_connection(self._host, self._port)
        except OSError:
            writer.transport.abort()
            return
        pair = (writer, up_writer)
        self._pairs.append(pair)
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        if pair in self._pairs:
            self._pairs.remove(pair)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await reader.read(65536):  # ends at EOF or when the pair is cut
            writer.write(chunk)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.transport.abort()


def own_connection_per_channel() -> None:
    """Make each agent's channel open its own connection (a private subchannel pool)."""
    options = (*connection._CHANNEL_OPTIONS, ("grpc.use_local_subchannel_pool", 1))
    connection._CHANNEL_OPTIONS = options


async def main_async(args: argparse.Namespace) -> None:
    acked: dict[str, list[int]] = {}
    if args.connection_per_agent:
        own_connection_per_channel()
    proxy = None
    if args.disconnect_every > 0:
        proxy = CuttingProxy(args.collector, args.disconnect_every)
        args.collector = await proxy.start()
    agents = [build(args, i, acked) for i in range(args.agents)]
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()

    def stop_all() -> None:
        stopping.set()
        for one in agents:
            one.stop()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop_all)
    cutter = None if proxy is None else asyncio.create_task(proxy.cut_until(stopping))
    await asyncio.gather(*(a.run() for a in agents))
    stopping.set()
    if proxy is not None and cutter is not None:
        await cutter
        await proxy.close()
        Path(f"{args.out}.disconnects").write_text(str(proxy.cuts))
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
    parser.add_argument(
        "--disconnect-every",
        type=float,
        default=0.0,
        help="mean seconds between random stream cuts across the swarm (0: none)",
    )
    parser.add_argument(
        "--connection-per-agent",
        action="store_true",
        help="one TCP connection per agent, as with separate processes (default: shared)",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
