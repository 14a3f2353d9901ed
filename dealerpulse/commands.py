"""The subcommands of ``dealerpulse``: option lists and handlers.

Handlers import server-side packages only when they run, so the agent's
minimal install can parse every command's --help and run ``agent``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dealerpulse import table
from dealerpulse.cli import Command
from dealerpulse.config import (
    DB_OPTION,
    Option,
    data_dir,
    default_database_url,
    host_port,
    path,
    positive_float,
)

logger = logging.getLogger(__name__)


def all_commands() -> list[Command | tuple[str, str, list[Command]]]:
    from agent.settings import AGENT_OPTIONS
    from collector.settings import COLLECTOR_OPTIONS

    return [
        Command(
            "up",
            "run collector and a local agent together (the embedded setup)",
            UP_OPTIONS,
            run_up,
        ),
        Command(
            "collector", "run the collector (gRPC ingest server)", COLLECTOR_OPTIONS, run_collector
        ),
        Command(
            "agent",
            "run the agent on a dealer server",
            AGENT_OPTIONS,
            run_agent,
            extra=_agent_flags,
        ),
        (
            "dealer",
            "manage dealers and their tokens",
            [
                Command(
                    "add",
                    "register a dealer and print its token (shown once)",
                    [DB_OPTION],
                    dealer_add,
                    section="dealer",
                    extra=_dealer_add_args,
                ),
                Command(
                    "list",
                    "list dealers, their agents and when they were last seen",
                    [DB_OPTION],
                    dealer_list,
                    section="dealer",
                    extra=_json_flag,
                ),
            ],
        ),
        Command(
            "status",
            "newest resource usage per dealer and agent",
            [DB_OPTION],
            status,
            extra=_status_args,
        ),
    ]


def out(text: str = "") -> None:
    sys.stdout.write(text + "\n")


def run_service(main: Callable[[asyncio.Event], Awaitable[None]]) -> int:
    """Run an async service until SIGINT/SIGTERM sets its stop event."""

    async def runner() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await main(stop)

    asyncio.run(runner())
    return 0


def _db_url(settings: dict[str, Any]) -> str:
    return str(settings.get("db") or default_database_url())


def _open_store(settings: dict[str, Any]) -> Any:
    from collector.store import open_store

    url = _db_url(settings)
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    return open_store(url)


# ---- agent


def _agent_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--check",
        action="store_true",
        help="verify the configuration and the connection to the collector, then exit",
    )


def run_agent(args: argparse.Namespace, settings: dict[str, Any]) -> int:
    from agent import runner
    from agent.settings import AgentConfig

    config = AgentConfig.from_values(settings)
    if args.check:
        report = asyncio.run(runner.check(config))
        out("\n".join(report.lines()))
        return 0 if report.ok else 1
    asyncio.run(runner.run_agent(config))
    return 0


# ---- collector


def run_collector(args: argparse.Namespace, settings: dict[str, Any]) -> int:
    from collector.server import run_collector as serve

    settings = {**settings, "db": _db_url(settings)}
    return run_service(lambda stop: serve(settings, stop))


# ---- up: the embedded setup


UP_OPTIONS = [
    Option("listen", host_port, "127.0.0.1:50051", "collector gRPC listen address"),
    DB_OPTION,
    Option(
        "state_dir",
        path,
        None,
        "where the local agent keeps its spool and token (default: the DealerPulse data directory)",
    ),
    Option("interval", positive_float, 10.0, "local agent's sampling interval in seconds"),
]


def run_up(args: argparse.Namespace, settings: dict[str, Any]) -> int:
    from dealerpulse.embedded import run_embedded

    state = Path(settings["state_dir"] or data_dir())
    return run_service(
        lambda stop: run_embedded(
            listen=settings["listen"],
            db_url=_db_url(settings),
            state_dir=state,
            interval_s=settings["interval"],
            stop=stop,
        )
    )


# ---- dealer


def _dealer_add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help='display name, e.g. "Sunrise Motors"')
    parser.add_argument("--id", dest="dealer_id", help="dealer id (default: from the name)")


def _json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def dealer_add(args: argparse.Namespace, settings: dict[str, Any]) -> int:
    from collector.abc import DealerExists
    from collector.admin import add_dealer

    store = _open_store(settings)
    try:
        dealer, token = add_dealer(store, args.name, args.dealer_id)
    except (DealerExists, ValueError) as exc:
        sys.stderr.write(f"dealerpulse dealer add: {exc}\n")
        return 1
    finally:
        store.close()
    out(f"dealer:  {dealer.dealer_id} ({dealer.name})")
    out(f"token:   {token}")
    out("Keep the token now: it is shown once and only its hash is stored.")
    return 0


def dealer_list(args: argparse.Namespace, settings: dict[str, Any]) -> int:
    store = _open_store(settings)
    try:
        dealers = store.list_dealers()
        agents = store.list_agents()
    finally:
        store.close()
    rows = []
    for dealer in dealers:
        own = [a for a in agents if a.dealer_id == dealer.dealer_id]
        last = max((a.last_seen for a in own), default=None)
        rows.append(
            {
                "dealer_id": dealer.dealer_id,
                "name": dealer.name,
                "agents": [
                    {
                        "agent_id": a.agent_id,
                        "hostname": a.hostname,
                        "last_seen": a.last_seen.isoformat(),
                    }
                    for a in own
                ],
                "last_seen": last.isoformat() if last else None,
            }
        )
    if args.json:
        out(json.dumps(rows, indent=2))
        return 0
    out(
        table.render(
            ["DEALER", "NAME", "AGENTS", "LAST SEEN"],
            [
                [
                    r["dealer_id"],
                    r["name"],
                    ", ".join(a["hostname"] for a in r["agents"]) or "-",
                    _ago(r["last_seen"]),
                ]
                for r in rows
            ],
        )
    )
    return 0


def _ago(iso: str | None) -> str:
    if not iso:
        return "never"
    seen = datetime.fromisoformat(iso)
    seconds = int((datetime.now(UTC) - seen).total_seconds())
    return f"{seen:%Y-%m-%d %H:%M:%S}Z ({seconds}s ago)"


# ---- status


def _status_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dealer", help="only this dealer id")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def status(args: argparse.Namespace, settings: dict[str, Any]) -> int:
    from collector.admin import agent_statuses

    store = _open_store(settings)
    try:
        statuses = agent_statuses(store, args.dealer)
    finally:
        store.close()
    if args.json:
        out(json.dumps([_jsonable(s) for s in statuses], indent=2))
        return 0
    if not statuses:
        out("no agents have reported yet")
        return 0
    out(
        table.render(
            [
                "DEALER",
                "HOST",
                "CPU%",
                "LOAD1",
                "MEM%",
                "SWAP%",
                "DISK%max",
                "NET in/out B/s",
                "RECEIVED",
                "SPOOLED",
                "DROPPED",
            ],
            [
                [
                    s.dealer_id,
                    s.hostname,
                    _num(s.cpu_percent),
                    _num(s.load_1m),
                    _num(s.memory_percent),
                    _num(s.swap_percent),
                    _num(s.disk_percent_max),
                    f"{_num(s.net_recv_bytes_per_s, 0)}/{_num(s.net_sent_bytes_per_s, 0)}",
                    _ago(s.last_seen.isoformat()),
                    s.spool_batches,
                    s.dropped_samples,
                ]
                for s in statuses
            ],
        )
    )
    return 0


def _num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _jsonable(status_row: Any) -> dict[str, Any]:
    from dataclasses import asdict

    return {
        k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in asdict(status_row).items()
    }
