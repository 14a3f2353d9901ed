"""The ``dealerpulse`` command: one entry point, one subcommand per role.

Server-side subcommands import their packages lazily, so that a dealer server
with only the agent's dependencies can still run ``dealerpulse agent``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from dealerpulse import __version__, logs
from dealerpulse.config import ConfigError, FileValues, Option, add_options, load_file, resolve

logger = logging.getLogger(__name__)

Handler = Callable[[argparse.Namespace, dict[str, Any]], int]


Options = Sequence[Option] | Callable[[], Sequence[Option]]


class Command:
    """A subcommand: its options (layered through dealerpulse.config) and its handler.

    ``options`` may be a callable that returns them: the modules that declare
    server options are then imported only when that command is the one run,
    so ``dealerpulse agent`` never loads collector code.
    """

    def __init__(
        self,
        name: str,
        help_text: str,
        options: Options,
        handler: Handler,
        section: str | None = None,
        extra: Callable[[argparse.ArgumentParser], None] | None = None,
    ) -> None:
        self.name = name
        self.help_text = help_text
        self._options = options
        self._resolved: list[Option] | None = None
        self.handler = handler
        self.section = section or name
        self.extra = extra

    @property
    def options(self) -> list[Option]:
        if self._resolved is None:
            declared = self._options() if callable(self._options) else self._options
            self._resolved = list(declared)
        return self._resolved


def _commands(only: str | None = None) -> list[Command | tuple[str, str, list[Command]]]:
    # Imported here, not at module level: building the parser must stay cheap.
    if only == "agent":
        # The agent's process must stay small: none of the other commands' modules.
        from dealerpulse.agent_command import agent_command

        return [agent_command()]
    from dealerpulse import commands

    return commands.all_commands()


def _global_options(parser: argparse.ArgumentParser) -> None:
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


def chosen_command(argv: Sequence[str]) -> str | None:
    """The command word of argv (after the global options), or None if there is none."""
    scan = argparse.ArgumentParser(add_help=False)
    _global_options(scan)
    scan.add_argument("command", nargs="?")
    try:
        known, _ = scan.parse_known_args(list(argv))
    except SystemExit:  # a bad global option: the real parser will say what is wrong
        return None
    return known.command if isinstance(known.command, str) else None


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The ``dealerpulse`` parser.

    Without ``argv`` every command gets its options. With ``argv`` only the
    command it names does (the others stay listed by name and help), so
    running one command imports no other command's option modules. For
    ``agent`` the others are not even listed: their modules are not loaded.
    """
    only = None if argv is None else chosen_command(argv)
    parser = argparse.ArgumentParser(
        prog="dealerpulse",
        description="DealerPulse performance monitoring: agent, collector, reporter.",
    )
    parser.add_argument("--version", action="version", version=f"dealerpulse {__version__}")
    _global_options(parser)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for entry in _commands(only):
        if isinstance(entry, Command):
            _add_command(subparsers, entry, argv is None or entry.name == only)
            continue
        group_name, group_help, members = entry
        group = subparsers.add_parser(group_name, help=group_help, description=group_help)
        group_sub = group.add_subparsers(dest="subcommand", metavar="SUBCOMMAND", required=True)
        for member in members:
            _add_command(group_sub, member, argv is None or group_name == only)
    return parser


def _add_command(subparsers: Any, command: Command, with_options: bool) -> None:
    sub = subparsers.add_parser(command.name, help=command.help_text, description=command.help_text)
    if with_options:
        add_options(sub, command.options)
        if command.extra:
            command.extra(sub)
    sub.set_defaults(_command=command)


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if "agent" in argv:
        # Before chosen_command's parser imports shutil (see agent.footprint).
        from agent.footprint import import_shutil_without_compressors

        import_shutil_without_compressors()
    if chosen_command(argv) == "agent":
        # Before the parser imports asyncio or protobuf: keeps the agent process small.
        from agent.footprint import defer_protobuf_python_message, import_grpc_without_stdlib_ssl

        import_grpc_without_stdlib_ssl()
        defer_protobuf_python_message()
    parser = build_parser(argv)
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
