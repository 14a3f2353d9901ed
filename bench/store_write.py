"""Store write benchmark: realistic host metrics through write_batches.

    python -m bench.store_write                       # SQLite temp file + local PostgreSQL
    python -m bench.store_write --db sqlite:///tmp/b.db --db postgresql+psycopg://postgres@127.0.0.1/x

Each round writes ``--batches`` batches of ``--samples`` samples from
``--agents`` agents (about 50 series each: CPU, load, memory, disks,
network), as groups of ``--group`` batches, one write_batches call (one
transaction) per group. Batches are built before the clock starts. Rounds
grow the table, so later rounds show the steady state rather than an empty
index. Prints samples/s per round and overall; ``--json`` writes the figures.
Without --db, SQLite uses a temporary file and PostgreSQL a temporary
database ``dp_bench_<random>`` on 127.0.0.1:5432 (skipped if unreachable).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from collector.store import SQLAlchemyMetricStore, open_store
from dealerpulse.clock import to_unix_ms
from dealerpulse.model import AgentCounters, Labels, MetricBatch, Sample, labels_of

DEALER = "bench-motors"
INTERVAL_MS = 10_000
DEFAULT_PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def host_series() -> list[tuple[str, str, Labels]]:
    """(name, unit, labels) of one dealer server: 52 series."""
    series: list[tuple[str, str, Labels]] = [("cpu.percent", "percent", ())]
    series += [("cpu.core_percent", "percent", labels_of(core=str(c))) for c in range(8)]
    series += [(f"load.{w}", "ratio", ()) for w in ("1m", "5m", "15m")]
    series += [
        (f"memory.{m}", "bytes" if m != "used_percent" else "percent", ())
        for m in ("used_percent", "used", "available", "cached")
    ]
    series += [("swap.used_percent", "percent", ()), ("swap.used", "bytes", ())]
    for mount in ("/", "/var", "/data", "/backup"):
        series += [
            ("disk.used_percent", "percent", labels_of(mount=mount)),
            ("disk.free", "bytes", labels_of(mount=mount)),
            ("disk.read_bytes_per_second", "bytes_per_second", labels_of(mount=mount)),
            ("disk.write_bytes_per_second", "bytes_per_second", labels_of(mount=mount)),
        ]
    for nic in ("eth0", "eth1"):
        series += [
            ("net.recv_bytes_per_second", "bytes_per_second", labels_of(interface=nic)),
            ("net.sent_bytes_per_second", "bytes_per_second", labels_of(interface=nic)),
            ("net.errors", "count", labels_of(interface=nic)),
        ]
    series += [(f"cpu.{m}_percent", "percent", ()) for m in ("user", "system", "iowait", "steal")]
    series += [(f"tcp.{s}", "count", ()) for s in ("established", "time_wait")]
    series += [
        ("process.count", "count", ()),
        ("process.threads", "count", ()),
        ("file.handles", "count", ()),
        ("uptime.seconds", "seconds", ()),
    ]
    return series


def build_rounds(
    rounds: int, batches: int, samples: int, agents: int, start_ms: int
) -> list[list[MetricBatch]]:
    catalogue = host_series()
    intervals = max(1, -(-samples // len(catalogue)))  # ceil: fill every batch
    seqs = dict.fromkeys(range(agents), 0)
    clock_ms = dict.fromkeys(range(agents), start_ms)
    built: list[list[MetricBatch]] = []
    for _ in range(rounds):
        this_round = []
        for index in range(batches):
            agent = index % agents
            seqs[agent] += 1
            points = []
            for step in range(intervals):
                at = clock_ms[agent] + step * INTERVAL_MS
                points += [
                    Sample(name, float((agent * 7 + step + i) % 100), unit, at, labels)
                    for i, (name, unit, labels) in enumerate(catalogue)
                ]
            clock_ms[agent] += intervals * INTERVAL_MS
            this_round.append(_batch(agent, seqs[agent], tuple(points[:samples])))
        built.append(this_round)
    return built


def _batch(agent: int, seq: int, points: tuple[Sample, ...]) -> MetricBatch:
    digest = hashlib.sha256(f"{agent}/{seq}/{len(points)}".encode()).digest()
    return MetricBatch(
        agent_id=f"bench-agent-{agent:03d}",
        dealer_id=DEALER,
        seq=seq,
        boot_id="bench",
        hostname=f"dms-{agent:03d}",
        agent_version="bench",
        created_ms=points[0].time_ms if points else 0,
        samples=points,
        counters=AgentCounters(generated_samples=seq * len(points)),
        digest=digest,
    )


def run(
    store: SQLAlchemyMetricStore, rounds: list[list[MetricBatch]], group: int
) -> dict[str, Any]:
    if store.get_dealer(DEALER) is None:
        store.create_dealer(DEALER, "Bench Motors", "bench-hash", datetime.now(UTC))
    per_round: list[float] = []
    group_ms: list[float] = []
    total_samples = 0
    total_s = 0.0
    for batches in rounds:
        started = time.perf_counter()
        for first in range(0, len(batches), group):
            group_started = time.perf_counter()
            results = store.write_batches(batches[first : first + group], datetime.now(UTC))
            group_ms.append((time.perf_counter() - group_started) * 1000)
            total_samples += sum(r.samples_stored for r in results)
        elapsed = time.perf_counter() - started
        total_s += elapsed
        per_round.append(sum(len(b.samples) for b in batches) / elapsed)
    return {
        "backend": store.dialect,
        "samples": total_samples,
        "seconds": round(total_s, 3),
        "samples_per_s": round(total_samples / total_s),
        "first_round_samples_per_s": round(per_round[0]),
        "last_round_samples_per_s": round(per_round[-1]),
        "group_ms_p50": round(statistics.median(group_ms), 1),
        "group_ms_max": round(max(group_ms), 1),
    }


@contextlib.contextmanager
def temporary_pg_database(admin_url: str) -> Iterator[str | None]:
    import psycopg
    from psycopg import sql
    from sqlalchemy.engine import make_url

    admin = make_url(admin_url)
    libpq = admin.set(drivername="postgresql").render_as_string(hide_password=False)
    name = f"dp_bench_{secrets.token_hex(4)}"
    try:
        with psycopg.connect(libpq, autocommit=True, connect_timeout=5) as connection:
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    except psycopg.Error as error:
        print(f"PostgreSQL skipped: {error}", file=sys.stderr)
        yield None
        return
    try:
        url = admin.set(drivername="postgresql+psycopg", database=name)
        yield url.render_as_string(hide_password=False)
    finally:
        with psycopg.connect(libpq, autocommit=True) as connection:
            connection.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def database_urls(
    stack: contextlib.ExitStack, given: list[str] | None, pg_admin: str, sqlite_name: str
) -> list[str]:
    """The URLs given, or by default a temporary SQLite file and a temporary PostgreSQL
    database (left out when PostgreSQL is unreachable); both removed when ``stack`` closes."""
    if given:
        return list(given)
    folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="dp-bench-"))
    urls = [f"sqlite:///{folder}/{sqlite_name}"]
    pg = stack.enter_context(temporary_pg_database(pg_admin))
    if pg is not None:
        urls.append(pg)
    return urls


def bench_url(
    url: str, args: argparse.Namespace, rounds: list[list[MetricBatch]]
) -> dict[str, Any]:
    store = open_store(url, sqlite_synchronous=args.sqlite_synchronous)
    try:
        result = run(store, rounds, args.group)
    finally:
        store.close()
    if store.dialect == "sqlite":
        result["sqlite_synchronous"] = args.sqlite_synchronous
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.store_write",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--db", action="append", help="database URL (repeatable)")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--batches", type=int, default=200, help="batches per round")
    parser.add_argument("--samples", type=int, default=500, help="samples per batch")
    parser.add_argument("--agents", type=int, default=100)
    parser.add_argument("--group", type=int, default=200, help="batches per write_batches call")
    parser.add_argument("--sqlite-synchronous", default="FULL", choices=["NORMAL", "FULL"])
    parser.add_argument(
        "--pg-admin",
        default=DEFAULT_PG_ADMIN,
        help="server for the temporary PostgreSQL database (without --db)",
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    start_ms = to_unix_ms(datetime.now(UTC)) - 86_400_000
    rounds = build_rounds(args.rounds, args.batches, args.samples, args.agents, start_ms)
    print(
        f"{args.rounds} rounds x {args.batches} batches x {args.samples} samples, "
        f"{args.agents} agents, {args.group} batches per transaction"
    )
    results = []
    with contextlib.ExitStack() as stack:
        urls = database_urls(stack, args.db, args.pg_admin, "bench.db")
        for url in urls:
            result = bench_url(url, args, rounds)
            results.append(result)
            print(json.dumps(result))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
