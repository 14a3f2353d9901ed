"""Benchmark (not a test): the agent's CPU and memory cost on this host.

Runs the real agent (``run_agent``, psutil host source, SQLite spool, gRPC
shipper) in a subprocess against a scripted collector on 127.0.0.1 and reads
the subprocess's CPU time and RSS from psutil.

    .venv/bin/python tests/agent/bench_agent_overhead.py --interval 10 --seconds 60

Budget: under 0.5 % of one core at a 10 s interval, under 40 MiB RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import textwrap
from pathlib import Path

import psutil
from agent_testkit import TOKEN, Changes, ScriptedCollector, serving

REPO = Path(__file__).resolve().parents[2]


def agent_script(address: str, spool: Path, interval_s: float) -> str:
    return textwrap.dedent(
        f"""
        import asyncio
        from pathlib import Path
        from agent.runner import run_agent
        from agent.settings import AgentConfig
        config = AgentConfig(
            collector={address!r}, token={TOKEN!r}, interval_s={interval_s!r},
            spool_path=Path({str(spool)!r}), hostname="bench-host",
        )
        asyncio.run(run_agent(config))
        """
    )


async def measure(interval_s: float, seconds: float, warmup_s: float) -> dict[str, float]:
    changes = Changes()
    collector = ScriptedCollector(changes)
    with tempfile.TemporaryDirectory() as tmp:
        async with serving(collector) as address:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                agent_script(address, Path(tmp) / "spool.db", interval_s),
                cwd=REPO,
                env={**os.environ, "PYTHONPATH": str(REPO)},
            )
            try:
                watched = psutil.Process(process.pid)
                await asyncio.sleep(warmup_s)  # a benchmark's measuring window, not a sync
                before = watched.cpu_times()
                batches_before = len(collector.stored())
                await asyncio.sleep(seconds)
                after = watched.cpu_times()
                memory = watched.memory_full_info()
                batches = len(collector.stored()) - batches_before
            finally:
                process.terminate()
                await asyncio.wait_for(process.wait(), 15)
    cpu_s = (after.user + after.system) - (before.user + before.system)
    return {
        "interval_s": interval_s,
        "window_s": seconds,
        "cpu_percent_of_one_core": 100 * cpu_s / seconds,
        "cpu_ms_per_interval": 1000 * cpu_s / max(1, batches),
        "rss_mib": memory.rss / 2**20,
        # Private memory: RSS less clean shared pages (the grpc .so alone is ~10 MiB).
        "uss_mib": memory.uss / 2**20,
        "batches_stored": batches,
        "samples_per_batch": _samples_per_batch(collector),
    }


def _samples_per_batch(collector: ScriptedCollector) -> float:
    if not collector.received:
        return 0.0
    return len(collector.decoded(len(collector.received) - 1).samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interval", type=float, default=10.0)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--warmup", type=float, default=5.0)
    args = parser.parse_args()
    result = asyncio.run(measure(args.interval, args.seconds, args.warmup))
    for key, value in result.items():
        print(f"{key:>26}: {value:.3f}")


if __name__ == "__main__":
    main()
