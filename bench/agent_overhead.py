"""Agent overhead benchmark (not a test): the real agent's CPU and memory on this host.

    python -m bench.agent_overhead                       # 10 s and 1 s intervals, 120 s each
    python -m bench.agent_overhead --intervals 10 --seconds 60

Starts a real collector (``python -m dealerpulse collector``) on a temporary
SQLite file, registers a dealer, then for each interval runs the real agent
(``dealerpulse agent``) as its own process and reads that process's CPU time
(user + system) over the measuring window, its peak RSS (VmHWM) and its USS
(private memory). The agent is the one a dealer server runs: a wheel of the
work tree installed into a new venv by that venv's own pip (bench.agent_install;
``--agent tree`` runs the work tree instead). Writes
bench/results/agent_overhead.json and prints a table.

Peak RSS includes the pages of shared libraries the agent has touched (the
``file`` column). grpc's C core is the largest (the ``grpc`` column), and how
many of its pages a process maps depends on the page cache as well as on the
process: the same agent read 10.1 MiB there when the library was installed by
pip 23 and 12.8 MiB for a while after pip 26 had written it (its page-cache
folios are larger then and are mapped whole), 2026-11-27.

Budget: under 0.5 % of one core at a 10 s interval, under 40 MiB RSS. For
scale (120 s at a 1 s interval): collectd 0.12 CPU-s and 3 MB RSS,
node_exporter 0.40 CPU-s and 21 MB, a bare psutil loop 0.08 CPU-s and 13 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

import psutil

from bench.agent_install import CHOICES, TREE, AgentProgram, InstallError, agent_program

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "agent_overhead.json"
DEALERPULSE = [sys.executable, "-m", "dealerpulse"]
DEALER = "bench-motors"
CPU_BUDGET_PERCENT = 0.5
RSS_BUDGET_MIB = 40.0
MIB = 2**20


@dataclass(frozen=True)
class Run:
    interval_s: float
    window_s: float
    cpu_s: float
    cpu_s_per_hour: float
    cpu_percent_of_one_core: float
    cpu_s_per_120s: float
    peak_rss_mib: float
    rss_mib: float
    # RSS split: pages backed by files (shared library code: grpc's C core,
    # libpython; shared with other processes) and anonymous (heap, Python objects).
    rss_file_mib: float
    rss_anon_mib: float
    # The part of rss_file in grpc's C core (cygrpc): see the docstring.
    grpc_core_rss_mib: float
    uss_mib: float
    threads: int
    batches_stored: int
    samples_stored: int
    # The host's 1-minute load average at the end of the window: CPU figures
    # are noisy on a busy machine, RSS figures are not.
    load_average_1m: float


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for(condition: Callable[[], bool], what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(0.05)


def _accepting(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _env(tmp: Path) -> dict[str, str]:
    """The collector's environment: the work tree, its own data directories."""
    env = TREE.environment(os.environ)
    env.update(XDG_DATA_HOME=str(tmp / "data"), XDG_STATE_HOME=str(tmp / "state"))
    env.pop("DATABASE_URL", None)
    env.pop("DEALERPULSE_CONFIG", None)
    return env


def _add_dealer(db_url: str, env: dict[str, str]) -> str:
    done = subprocess.run(
        [*DEALERPULSE, "dealer", "add", "Bench Motors", "--id", DEALER, "--db", db_url],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=60,
    )
    for line in done.stdout.splitlines():
        if line.startswith("token:"):
            return line.split(":", 1)[1].strip()
    raise SystemExit(f"dealer add printed no token:\n{done.stdout}\n{done.stderr}")


def _status(pid: int) -> dict[str, int]:
    """Numeric fields of /proc/PID/status (Linux); sizes are in KiB there."""
    fields: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        words = value.split()
        if words and words[0].isdigit():
            fields[key] = int(words[0])
    if "VmHWM" not in fields:
        raise SystemExit(f"no VmHWM in /proc/{pid}/status (Linux only)")
    return fields


def _grpc_core_rss_kib(pid: int) -> int:
    """Resident KiB of grpc's C core (the cygrpc extension) in process ``pid``."""
    total = 0
    in_core = False
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        words = line.split() or [""]
        if not words[0].endswith(":"):  # a mapping's first line: address range ... path
            in_core = len(words) >= 6 and "cygrpc" in Path(words[-1]).name
        elif in_core and words[0] == "Rss:":
            total += int(words[1])
    return total


def _stored(db_url: str, agent_id: str) -> tuple[int, int]:
    from collector.store import open_store

    store = open_store(db_url)
    try:
        committed = store.committed_batches(agent_id)
    finally:
        store.close()
    return len(committed), sum(committed.values())


@contextmanager
def running_agent(
    interval_s: float, port: int, token: str, tmp: Path, program: AgentProgram = TREE
) -> Iterator[subprocess.Popen[bytes]]:
    """The real agent (default settings, its API intake on a socket in ``tmp``) at
    ``interval_s``, started as ``program``, until the block ends."""
    agent_id = f"bench-{interval_s:g}s"
    log: IO[bytes] = open(tmp / f"agent-{agent_id}.log", "wb")  # noqa: SIM115 - closed below
    agent = subprocess.Popen(
        [
            *program.argv,
            "agent",
            "--collector",
            f"127.0.0.1:{port}",
            "--interval",
            str(interval_s),
            "--spool",
            str(tmp / f"spool-{agent_id}.db"),
            "--agent-id",
            agent_id,
            "--hostname",
            agent_id,
            # Its own intake socket: at the default path the intake would not start
            # if another agent on this host holds it, and the figures would then be
            # those of an agent without intake (one thread and its buffers fewer).
            "--intake",
            str(tmp / f"intake-{agent_id}.sock"),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**program.environment(_env(tmp)), "DEALERPULSE_TOKEN": token},
    )
    try:
        yield agent
    finally:
        agent.terminate()
        agent.wait(30)
        log.close()


def measure(
    interval_s: float,
    seconds: float,
    warmup_s: float,
    port: int,
    token: str,
    tmp: Path,
    program: AgentProgram = TREE,
) -> tuple[Run, int]:
    """One agent process at one interval; the Run and the agent's pid (for logs)."""
    agent_id = f"bench-{interval_s:g}s"
    with running_agent(interval_s, port, token, tmp, program) as agent:
        watched = psutil.Process(agent.pid)
        time.sleep(warmup_s)  # start-up is not steady state; a benchmark window, not a sync
        before = watched.cpu_times()
        started = time.monotonic()
        time.sleep(seconds)
        after = watched.cpu_times()
        window_s = time.monotonic() - started
        memory = watched.memory_full_info()
        status = _status(agent.pid)
        grpc_core_kib = _grpc_core_rss_kib(agent.pid)
    cpu_s = (after.user + after.system) - (before.user + before.system)
    batches, samples = _stored(f"sqlite:///{tmp / 'collector.db'}", agent_id)
    run = Run(
        interval_s=interval_s,
        window_s=round(window_s, 1),
        cpu_s=round(cpu_s, 3),
        cpu_s_per_hour=round(cpu_s * 3600 / window_s, 2),
        cpu_percent_of_one_core=round(100 * cpu_s / window_s, 3),
        cpu_s_per_120s=round(cpu_s * 120 / window_s, 3),
        peak_rss_mib=round(status["VmHWM"] * 1024 / MIB, 1),
        rss_mib=round(memory.rss / MIB, 1),
        rss_file_mib=round(status["RssFile"] * 1024 / MIB, 1),
        rss_anon_mib=round(status["RssAnon"] * 1024 / MIB, 1),
        grpc_core_rss_mib=round(grpc_core_kib * 1024 / MIB, 1),
        uss_mib=round(memory.uss / MIB, 1),
        threads=status["Threads"],
        batches_stored=batches,
        samples_stored=samples,
        load_average_1m=round(os.getloadavg()[0], 2),
    )
    return run, agent.pid


@contextmanager
def running_collector(tmp: Path) -> Iterator[tuple[int, str]]:
    """A collector on a SQLite file in ``tmp`` with one dealer: (port, the dealer's token)."""
    db_url = f"sqlite:///{tmp / 'collector.db'}"
    env = _env(tmp)
    token = _add_dealer(db_url, env)
    port = _free_port()
    collector_log = open(tmp / "collector.log", "wb")  # noqa: SIM115 - closed below
    collector = subprocess.Popen(
        [*DEALERPULSE, "collector", "--listen", f"127.0.0.1:{port}", "--db", db_url],
        stdout=collector_log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    try:
        _wait_for(lambda: _accepting(port) or collector.poll() is not None, "the collector")
        if collector.poll() is not None:
            raise SystemExit((tmp / "collector.log").read_text())
        yield port, token
    finally:
        collector.terminate()
        collector.wait(30)
        collector_log.close()


def run_all(
    intervals: Sequence[float], seconds: float, warmup_s: float, agent: str
) -> tuple[list[Run], str]:
    """The runs, and what agent program they measured."""
    with tempfile.TemporaryDirectory(prefix="dp-bench-agent-") as tmp_name:
        tmp = Path(tmp_name)
        program = agent_program(agent, tmp / "install")
        with running_collector(tmp) as (port, token):
            runs = [measure(i, seconds, warmup_s, port, token, tmp, program)[0] for i in intervals]
    return runs, program.description


def table(runs: Sequence[Run]) -> str:
    header = (
        f"{'interval':>8} {'window':>7} {'CPU-s':>7} {'CPU-s/h':>8} {'%core':>7} "
        f"{'CPU-s/120s':>10} {'peakRSS':>8} {'RSS':>6} {'file':>6} {'grpc':>6} {'anon':>6} "
        f"{'USS':>6} "
        f"{'thr':>3} {'batches':>7} {'samples':>7} {'load':>5}"
    )
    lines = [header]
    for r in runs:
        lines.append(
            f"{r.interval_s:>7g}s {r.window_s:>6.0f}s {r.cpu_s:>7.3f} {r.cpu_s_per_hour:>8.2f} "
            f"{r.cpu_percent_of_one_core:>7.3f} {r.cpu_s_per_120s:>10.3f} "
            f"{r.peak_rss_mib:>7.1f}M {r.rss_mib:>5.1f}M {r.rss_file_mib:>5.1f}M "
            f"{r.grpc_core_rss_mib:>5.1f}M "
            f"{r.rss_anon_mib:>5.1f}M {r.uss_mib:>5.1f}M {r.threads:>3} "
            f"{r.batches_stored:>7} {r.samples_stored:>7} {r.load_average_1m:>5.2f}"
        )
    return "\n".join(lines)


def _verdict(runs: Sequence[Run]) -> list[str]:
    lines = []
    for r in runs:
        over_rss = r.peak_rss_mib >= RSS_BUDGET_MIB
        over_cpu = r.interval_s >= 10 and r.cpu_percent_of_one_core >= CPU_BUDGET_PERCENT
        state = "OVER BUDGET" if over_rss or over_cpu else "within budget"
        lines.append(f"{r.interval_s:g}s: {state}")
    return lines


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--intervals", default="10,1", help="comma-separated agent intervals in s (default 10,1)"
    )
    parser.add_argument("--seconds", type=float, default=120.0, help="window per interval")
    parser.add_argument("--warmup", type=float, default=5.0, help="start-up left out of window")
    parser.add_argument("--out", type=Path, default=RESULTS, help="JSON results file")
    parser.add_argument(
        "--agent",
        choices=CHOICES,
        default="installed",
        help="installed: as a dealer server runs it (default); tree: the work tree",
    )
    args = parser.parse_args(argv)
    try:
        intervals = [float(x) for x in args.intervals.split(",") if x.strip()]
    except ValueError:
        parser.error(f"--intervals must be numbers separated by commas, got {args.intervals!r}")
    try:
        runs, agent = run_all(intervals, args.seconds, args.warmup, args.agent)
    except InstallError as exc:
        raise SystemExit(str(exc)) from exc
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "benchmark": "agent_overhead",
                "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "machine": {
                    "python": platform.python_version(),
                    "platform": platform.platform(),
                    "cpus": os.cpu_count(),
                    "cpu": platform.processor() or platform.machine(),
                },
                "agent": agent,
                "budget": {
                    "cpu_percent_at_10s": CPU_BUDGET_PERCENT,
                    "rss_mib": RSS_BUDGET_MIB,
                },
                "runs": [asdict(r) for r in runs],
            },
            indent=2,
        )
        + "\n"
    )
    print(f"agent: {agent}")
    print(table(runs))
    print("\n".join(_verdict(runs)))
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
