"""The ``dealerpulse agent`` command, apart from the other commands.

The agent runs on dealer servers with a budget of 40 MiB peak RSS (issue 2):
``dealerpulse agent`` builds a parser with this command only, so it imports
none of the modules of the other commands (their option lists, table output,
json, datetime): about 0.2 MiB less peak RSS, measured.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from typing import Any

from dealerpulse.cli import Command
from dealerpulse.config import Option


def agent_command() -> Command:
    return Command(
        "agent",
        "run the agent on a dealer server",
        _agent_options,
        run_agent,
        extra=_agent_flags,
    )


def _agent_options() -> Sequence[Option]:
    from agent.settings import AGENT_OPTIONS

    return AGENT_OPTIONS


def _agent_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--check",
        action="store_true",
        help="verify the configuration and the connection to the collector, then exit",
    )
    parser.add_argument(
        "--probe",
        dest="probe_urls",
        action="append",
        metavar="URL",
        help="probe this URL (GET, expecting 200) every 30 s; repeatable; replaces the "
        "configured probes",
    )


def run_agent(args: argparse.Namespace, settings: dict[str, Any]) -> int:
    from agent import runner
    from agent.settings import AgentConfig

    if args.probe_urls:
        from agent.settings import probes_value
        from dealerpulse.config import ConfigError

        try:
            settings = {**settings, "probes": probes_value(args.probe_urls)}
        except ValueError as exc:
            raise ConfigError(f"--probe: {exc}") from None
    config = AgentConfig.from_values(settings)
    if args.check:
        report = asyncio.run(runner.check(config))
        sys.stdout.write("\n".join(report.lines()) + "\n")
        return 0 if report.ok else 1
    asyncio.run(runner.run_agent(config))
    return 0
