"""Agent overhead against collectd: CPU seconds and RSS over the same window, as ratios.

    apt-get install -y collectd          # once (or: make bench-deps); not installed by this bench
    python -m bench.collectd                     # 300 s window, 10 s interval
    python -m bench.collectd --quick             # 30 s window

Our agent (``dealerpulse agent``, default settings: host source and API
intake, shipping to a real collector on a temporary SQLite file; installed as
on a dealer server unless ``--agent tree``: see bench.agent_install) and
collectd (``collectd -f -C CONF``, never its system service) run side by side
over the same window, at the same interval (``--interval``, default our
agent's 10 s). collectd's config lives in a temp dir: the cpu, memory, disk,
df, interface, load, processes and swap plugins, written by the csv plugin
into the temp dir. For each process: CPU seconds
(utime + stime from /proc/PID/stat) over the window after a warm-up, RSS
(VmRSS of /proc/PID/status) sampled once a second, and its peak (VmHWM).

Prints a table and writes bench/results/collectd.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from bench.agent_install import CHOICES, AgentProgram, InstallError, agent_program
from bench.agent_overhead import _stored, running_agent, running_collector
from bench.ingest import REPO, machine

RESULTS = REPO / "bench" / "results" / "collectd.json"
PLUGINS = ("cpu", "memory", "disk", "df", "interface", "load", "processes", "swap")
MIB = 2**20
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class BenchError(Exception):
    """The benchmark could not run."""


@dataclass(frozen=True)
class Usage:
    process: str
    pid: int
    window_s: float
    cpu_s: float
    cpu_percent_of_one_core: float
    rss_mean_mib: float
    rss_max_mib: float
    peak_rss_mib: float
    # What it collected in the window: our batches stored; collectd's csv rows.
    output: str


def cpu_seconds(pid: int) -> float:
    """utime + stime of the whole process (all threads), from /proc/PID/stat."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    # The command name (field 2) may hold spaces: the fields after it start past ")".
    fields = stat[stat.rindex(")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)
    return (utime + stime) / CLOCK_TICKS


def status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1])
    raise BenchError(f"no {key} in /proc/{pid}/status (Linux only)")


def collectd_config(folder: Path, interval_s: float) -> str:
    loads = "\n".join(f"LoadPlugin {plugin}" for plugin in (*PLUGINS, "csv"))
    return f"""\
Hostname "dp-bench"
FQDNLookup false
BaseDir "{folder}"
PIDFile "{folder}/collectd.pid"
Interval {interval_s:g}

LoadPlugin logfile
<Plugin logfile>
  LogLevel "info"
  File "{folder}/collectd.log"
</Plugin>

{loads}

<Plugin csv>
  DataDir "{folder}/csv"
  StoreRates true
</Plugin>
"""


@contextlib.contextmanager
def running_collectd(folder: Path, interval_s: float) -> Iterator[subprocess.Popen[bytes]]:
    binary = shutil.which("collectd") or "/usr/sbin/collectd"
    if not Path(binary).exists():
        raise BenchError("collectd is not installed: apt-get install -y collectd (make bench-deps)")
    config = folder / "collectd.conf"
    config.write_text(collectd_config(folder, interval_s))
    checked = subprocess.run([binary, "-t", "-C", str(config)], capture_output=True, text=True)
    if checked.returncode != 0:
        raise BenchError(f"collectd refuses its config: {checked.stderr or checked.stdout}")
    with (folder / "collectd.stderr").open("wb") as log:
        process = subprocess.Popen(
            [binary, "-f", "-C", str(config)], stdout=log, stderr=subprocess.STDOUT
        )
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def csv_rows(folder: Path) -> int:
    """Data rows collectd wrote (each file has a header line)."""
    return sum(
        max(0, len(path.read_text().splitlines()) - 1)
        for path in (folder / "csv").rglob("*")
        if path.is_file()
    )


def observe(pids: dict[str, int], warmup_s: float, window_s: float) -> dict[str, Usage]:
    """CPU and RSS of each named process over one window after ``warmup_s``."""
    time.sleep(warmup_s)  # start-up is not steady state: a benchmark window, not a sync
    cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    rss_kib: dict[str, list[int]] = {name: [] for name in pids}
    started = time.monotonic()
    deadline = started + window_s
    while (now := time.monotonic()) < deadline:
        for name, pid in pids.items():
            rss_kib[name].append(status_kib(pid, "VmRSS"))
        time.sleep(min(1.0, deadline - now))
    window = time.monotonic() - started
    usages = {}
    for name, pid in pids.items():
        cpu_s = cpu_seconds(pid) - cpu_before[name]
        usages[name] = Usage(
            process=name,
            pid=pid,
            window_s=round(window, 1),
            cpu_s=round(cpu_s, 3),
            cpu_percent_of_one_core=round(100 * cpu_s / window, 3),
            rss_mean_mib=round(statistics.fmean(rss_kib[name]) / 1024, 1),
            rss_max_mib=round(max(rss_kib[name]) / 1024, 1),
            peak_rss_mib=round(status_kib(pid, "VmHWM") / 1024, 1),
            output="",
        )
    return usages


def run(
    interval_s: float, warmup_s: float, window_s: float, agent_choice: str
) -> tuple[Usage, Usage, AgentProgram]:
    """(our agent, collectd, what our agent was), side by side over the same window."""
    with tempfile.TemporaryDirectory(prefix="dp-bench-collectd-") as name:
        tmp = Path(name)
        (tmp / "collectd").mkdir()
        try:
            program = agent_program(agent_choice, tmp / "install")
        except InstallError as exc:
            raise BenchError(str(exc)) from exc
        with (
            running_collector(tmp) as (port, token),
            running_agent(interval_s, port, token, tmp, program) as agent,
            running_collectd(tmp / "collectd", interval_s) as collectd,
        ):
            usages = observe(
                {"dealerpulse agent": agent.pid, "collectd": collectd.pid}, warmup_s, window_s
            )
            for process, what in ((agent, "our agent"), (collectd, "collectd")):
                if process.poll() is not None:
                    raise BenchError(f"{what} exited during the window ({process.returncode})")
        batches, samples = _stored(f"sqlite:///{tmp / 'collector.db'}", f"bench-{interval_s:g}s")
        rows = csv_rows(tmp / "collectd")
    ours = usages["dealerpulse agent"]
    theirs = usages["collectd"]
    ours = Usage(**{**asdict(ours), "output": f"{batches} batches, {samples} samples stored"})
    theirs = Usage(**{**asdict(theirs), "output": f"{rows} csv rows written"})
    if not batches or not rows:
        raise BenchError(f"nothing collected: ours {ours.output}, collectd {theirs.output}")
    return ours, theirs, program


def table(ours: Usage, theirs: Usage) -> str:
    rows = [
        f"{'process':<18} {'CPU-s':>7} {'%core':>7} {'RSS mean':>9} {'RSS max':>8} "
        f"{'peak':>7}  output"
    ]
    for usage in (ours, theirs):
        rows.append(
            f"{usage.process:<18} {usage.cpu_s:>7.2f} {usage.cpu_percent_of_one_core:>7.3f} "
            f"{usage.rss_mean_mib:>8.1f}M {usage.rss_max_mib:>7.1f}M {usage.peak_rss_mib:>6.1f}M"
            f"  {usage.output}"
        )
    return "\n".join(rows)


def ratios(ours: Usage, theirs: Usage) -> dict[str, float | None]:
    def over(a: float, b: float) -> float | None:
        return round(a / b, 2) if b else None

    return {
        "cpu_s": over(ours.cpu_s, theirs.cpu_s),
        "rss_mean": over(ours.rss_mean_mib, theirs.rss_mean_mib),
        "peak_rss": over(ours.peak_rss_mib, theirs.peak_rss_mib),
    }


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(
        prog="python -m bench.collectd",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--duration", type=float, default=300.0, help="window, s (default 300)")
    parser.add_argument("--quick", action="store_true", help="a 30 s window")
    parser.add_argument("--interval", type=float, default=10.0, help="both agents' interval, s")
    parser.add_argument("--warmup", type=float, default=5.0, help="start-up left out, s")
    parser.add_argument("--json", type=Path, default=RESULTS)
    parser.add_argument(
        "--agent",
        choices=CHOICES,
        default="installed",
        help="installed: our agent as a dealer server runs it (default); tree: the work tree",
    )
    args = parser.parse_args(argv)
    duration = 30.0 if args.quick else args.duration
    if duration <= 0 or args.interval <= 0 or args.warmup < 0:
        parser.error("--duration and --interval must be positive, --warmup at least 0")
    print(f"collectd: our agent and collectd at a {args.interval:g} s interval, {duration:g} s")
    try:
        ours, theirs, program = run(args.interval, args.warmup, duration, args.agent)
    except BenchError as exc:
        print(f"collectd benchmark failed: {exc}", file=sys.stderr)
        return 1
    print(f"our agent: {program.description}")
    print(table(ours, theirs))
    ratio = ratios(ours, theirs)
    print(f"ours / collectd: CPU-s {ratio['cpu_s']}, mean RSS {ratio['rss_mean']}")
    report = {
        "benchmark": "collectd",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": shlex.join([Path(sys.executable).name, "-m", "bench.collectd", *argv]),
        "machine": machine(),
        "agent": program.description,
        "interval_s": args.interval,
        "window_s": duration,
        "collectd_plugins": [*PLUGINS, "csv"],
        "runs": [asdict(ours), asdict(theirs)],
        "ours_over_collectd": ratio,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"results: {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
