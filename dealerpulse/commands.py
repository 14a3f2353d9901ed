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
from collections.abc import Awaitable, Callable, Sequence
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


def _collector_options() -> Sequence[Option]:
    from collector.settings import COLLECTOR_OPTIONS

    return COLLECTOR_OPTIONS


def _status_options() -> Sequence[Option]:
    from collector.health import HEALTH_OPTIONS

    return [DB_OPTION, *HEALTH_OPTIONS]


def all_commands() -> list[Command | tuple[str, str, list[Command]]]:
    # Option lists of other packages are callables: the CLI imports them only
    # for the command being run (``dealerpulse agent`` loads no collector code).
    from dealerpulse.agent_command import agent_command
    from dealerpulse.alerts_cli import alert_commands  # imports no grpc until a command runs
    from dealerpulse.reporter_cli import reporter_commands  # the same
    from dealerpulse.security_cli import certs_command, token_commands

    return [
        Command(
            "up",
            "run collector and a local agent together (the embedded setup)",
            UP_OPTIONS,
            run_up,
        ),
        Command(
            "collector", "run the collector (gRPC ingest server)", _collector_options, run_collector
        ),
        agent_command(),
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
                *token_commands(),
            ],
        ),
        certs_command(),
        Command(
            "status",
            "newest resource usage per agent and system health per dealer",
            _status_options,
            status,
            extra=_status_args,
        ),
        ("alerts", "alert rules, alerts and silences of a collector", alert_commands()),
        *reporter_commands(),
        Command(
            "admin-token",
            "issue an admin token (rules for every dealer) and print it once",
            [DB_OPTION],
            admin_token,
        ),
    ]


def out(text: str = "") -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()  # services announce things while they keep running


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
    Option(
        "reporter_listen",
        host_port,
        "127.0.0.1:50052",
        "reporter gRPC listen address (analytics; `dealerpulse analytics` asks it)",
    ),
    Option(
        "http",
        host_port,
        "127.0.0.1:8080",
        "dashboard and HTTP API listen address (the URL is printed at start)",
    ),
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
            reporter_listen=settings["reporter_listen"],
            http_listen=settings["http"],
            announce=out,
        )
    )


# ---- dealer


def _dealer_add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help='display name, e.g. "Sunrise Motors"')
    parser.add_argument("--id", dest="dealer_id", help="dealer id (default: from the name)")


def _json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def admin_token(args: argparse.Namespace, settings: dict[str, Any]) -> int:
    from dealerpulse import tokens

    store = _open_store(settings)
    try:
        token = tokens.new_admin_token()
        store.add_token(None, tokens.hash_token(token), datetime.now(UTC), role="admin")
    finally:
        store.close()
    out(f"admin token: {token}")
    out("Keep the token now: it is shown once and only its hash is stored.")
    return 0


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
                        "clock_offset_ms": a.clock_offset_ms,
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
            ["DEALER", "NAME", "AGENTS", "LAST SEEN", "CLOCK OFFSET"],
            [
                [
                    r["dealer_id"],
                    r["name"],
                    ", ".join(a["hostname"] for a in r["agents"]) or "-",
                    _ago(r["last_seen"]),
                    ", ".join(_offset(a["clock_offset_ms"]) for a in r["agents"]) or "-",
                ]
                for r in rows
            ],
        )
    )
    return 0


def _offset(offset_ms: int | None) -> str:
    """'+3600.0s' (agent clock ahead), '-0.2s' (behind), '-' (not known yet)."""
    return "-" if offset_ms is None else f"{offset_ms / 1000:+.1f}s"


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
    parser.add_argument(
        "--window",
        type=float,
        default=300.0,
        metavar="SECONDS",
        help="health over the last SECONDS (default: 300)",
    )


def status(args: argparse.Namespace, settings: dict[str, Any]) -> int:
    from collector.admin import agent_statuses, dealer_healths
    from collector.health import HealthThresholds

    if not args.window > 0:
        sys.stderr.write(f"dealerpulse status: --window must be positive, got {args.window}\n")
        return 2
    store = _open_store(settings)
    try:
        statuses = agent_statuses(store, args.dealer)
        healths = dealer_healths(
            store, args.dealer, args.window, HealthThresholds.from_values(settings)
        )
    finally:
        store.close()
    if args.json:
        document = {
            "agents": [_jsonable(s) for s in statuses],
            "health": [_jsonable(h) for h in healths],
        }
        out(json.dumps(document, indent=2))
        return 0
    if not statuses:
        out("no agents have reported yet")
    else:
        _print_agents(statuses)
    for health in healths:
        out()
        _print_health(health)
    return 0


def _print_agents(statuses: list[Any]) -> None:
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
                "CLOCK OFFSET",
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
                    _offset(s.clock_offset_ms),
                ]
                for s in statuses
            ],
        )
    )


def _print_health(health: Any) -> None:
    minutes = (health.end - health.start).total_seconds() / 60
    uptime = "-" if health.uptime_percent is None else f"{health.uptime_percent:.2f}%"
    out(
        f"health of {health.dealer_id} over {minutes:g} min: {health.status.value.upper()} "
        f"(resources: {health.resource_status.value})"
    )
    out(
        f"  uptime {uptime} ({health.uptime_source or 'unknown'})  "
        f"requests {health.requests}  throughput {health.throughput_per_min:.1f}/min  "
        f"errors {_num(health.error_rate_percent, 2)}%"
    )
    out(
        f"  response ms: avg {_num(health.avg_ms)}  p50 {_num(health.p50_ms)}  "
        f"p95 {_num(health.p95_ms)}  p99 {_num(health.p99_ms)}"
    )
    for reason in health.reasons:
        out(f"  ! {reason}")
    if health.endpoints:
        out(
            table.render(
                ["ENDPOINT", "METHOD", "CALLS/h", "SUCCESS%", "ERRORS", "AVG ms", "LAST ERROR"],
                [
                    [
                        e.route,
                        e.method,
                        f"{e.calls_per_hour:.0f}",
                        f"{e.success_rate_percent:.2f}",
                        e.errors,
                        _num(e.avg_ms),
                        (e.last_error[:60] or "-"),
                    ]
                    for e in health.endpoints
                ],
            )
        )


def _num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _jsonable(row: Any) -> Any:
    """Dataclasses, datetimes and enums as JSON values, recursively."""
    from dataclasses import fields, is_dataclass
    from enum import Enum

    if is_dataclass(row) and not isinstance(row, type):
        return {f.name: _jsonable(getattr(row, f.name)) for f in fields(row)}
    if isinstance(row, datetime):
        return row.isoformat()
    if isinstance(row, Enum):
        return row.value
    if isinstance(row, list | tuple):
        return [_jsonable(item) for item in row]
    if isinstance(row, dict):
        return {str(k): _jsonable(v) for k, v in row.items()}
    return row
