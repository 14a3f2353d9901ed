"""The ``dealerpulse`` command: one entry point, one subcommand per role.

Server-side subcommands import their packages lazily, so that a dealer server
with only the agent's dependencies can still run ``dealerpulse agent``.
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from dealerpulse import __version__, logs
from dealerpulse.config import ConfigError, FileValues, Option, add_options, load_file, resolve

logger = logging.getLogger(__name__)

Handler = Callable[[argparse.Namespace, dict[str, Any]], int]


class Command:
    """A subcommand: its options (layered through dealerpulse.config) and its handler."""

    def __init__(
        self,
        name: str,
        help_text: str,
        options: Sequence[Option],
        handler: Handler,
        section: str | None = None,
        extra: Callable[[argparse.ArgumentParser], None] | None = None,
    ) -> None:
        self.name = name
        self.help_text = help_text
        self.options = list(options)
        self.handler = handler
        self.section = section or name
        self.extra = extra


def _commands() -> list[Command | tuple[str, str, list[Command]]]:
    # Imported here, not at module level: building the parser must stay cheap.
    from dealerpulse import commands

    return commands.all_commands()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dealerpulse",
        description="DealerPulse performance monitoring: agent, collector, reporter.",
    )
    parser.add_argument("--version", action="version", version=f"dealerpulse {__version__}")
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        help="TOML config file (env: DEALERPULSE_CONFIG); sections named after the commands",
    )
    parser.add_argument(
        "--log-level",
        default=os.environ.get("DEALERPULSE_LOG_LEVEL", "INFO"),
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="logging level (env: DEALERPULSE_LOG_LEVEL)",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for entry in _commands():
        if isinstance(entry, Command):
            _add_command(subparsers, entry)
            continue
        group_name, group_help, members = entry
        group = subparsers.add_parser(group_name, help=group_help, description=group_help)
        group_sub = group.add_subparsers(dest="subcommand", metavar="SUBCOMMAND", required=True)
        for member in members:
            _add_command(group_sub, member)
    return parser


def _add_command(subparsers: Any, command: Command) -> None:
    sub = subparsers.add_parser(command.name, help=command.help_text, description=command.help_text)
    add_options(sub, command.options)
    if command.extra:
        command.extra(sub)
    sub.set_defaults(_command=command)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logs.setup(args.log_level)
    command: Command = args._command
    config_path = args.config or (
        Path(os.environ["DEALERPULSE_CONFIG"]) if os.environ.get("DEALERPULSE_CONFIG") else None
    )
    try:
        file_values: FileValues = load_file(config_path, command.section)
        settings = resolve(command.options, vars(args), os.environ, file_values)
    except ConfigError as exc:
        parser.exit(2, f"dealerpulse {command.name}: configuration error: {exc}\n")
    try:
        return command.handler(args, settings)
    except ConfigError as exc:
        parser.exit(2, f"dealerpulse {command.name}: configuration error: {exc}\n")
    except KeyboardInterrupt:
        return 130
