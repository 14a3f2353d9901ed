"""Layered settings: explicit flag > environment variable > TOML file > default.

Each command declares its options once (:class:`Option`); :func:`add_options`
puts them on an argparse parser and :func:`resolve` merges the layers and
validates every value, failing with a :class:`ConfigError` that names the key
and where the bad value came from.
"""

from __future__ import annotations

import argparse
import math
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CONFIG_ENV = "DEALERPULSE_CONFIG"


class ConfigError(ValueError):
    """A setting with a bad value; the message names the key and its origin."""


Parser = Callable[[Any], Any]


@dataclass(frozen=True)
class Option:
    key: str
    parse: Parser
    default: Any
    help: str
    env: tuple[str, ...] = ()
    flag: str | None = None
    secret: bool = False

    @property
    def cli_flag(self) -> str:
        return self.flag or "--" + self.key.replace("_", "-")

    @property
    def env_names(self) -> tuple[str, ...]:
        return self.env or ("DEALERPULSE_" + self.key.upper(),)


# ---- value parsers: take a string (flag, env) or a TOML value; raise ValueError


def text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"must be a string, got {value!r}")
    return value


def non_empty(value: Any) -> str:
    if not text(value).strip():
        raise ValueError("must not be empty")
    return str(value).strip()


def optional_text(value: Any) -> str | None:
    return None if value is None or value == "" else text(value)


def positive_float(value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"must be a number, got {value!r}") from None
    if not math.isfinite(number) or number <= 0:
        raise ValueError(f"must be a positive number, got {value!r}")
    return number


def non_negative_float(value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"must be a number, got {value!r}") from None
    if not math.isfinite(number) or number < 0:
        raise ValueError(f"must be zero or a positive number, got {value!r}")
    return number


def positive_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError(f"must be a whole number, got {value!r}")
    try:
        number = int(str(value).strip()) if not isinstance(value, int) else value
    except ValueError:
        raise ValueError(f"must be a whole number, got {value!r}") from None
    if number <= 0:
        raise ValueError(f"must be a positive whole number, got {value!r}")
    return number


def non_negative_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError(f"must be a whole number, got {value!r}")
    try:
        number = int(str(value).strip()) if not isinstance(value, int) else value
    except ValueError:
        raise ValueError(f"must be a whole number, got {value!r}") from None
    if number < 0:
        raise ValueError(f"must be zero or a positive whole number, got {value!r}")
    return number


def boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    lowered = str(value).strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ValueError(f"must be true or false, got {value!r}")


_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]i?b?|b)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def byte_size(value: Any) -> int:
    """'256MiB', '1g', '1048576' -> bytes (binary units)."""
    if isinstance(value, int) and not isinstance(value, bool):
        number, unit = float(value), ""
    else:
        match = _SIZE_RE.match(str(value))
        if not match:
            raise ValueError(f"must be a size such as 256MiB, got {value!r}")
        number, unit = float(match.group(1)), (match.group(2) or "")[:1].lower()
    size = int(number * _SIZE_UNITS[unit])
    if size <= 0:
        raise ValueError(f"must be a positive size, got {value!r}")
    return size


def host_port(value: Any) -> str:
    """'127.0.0.1:50051', '[::1]:50051' or 'name:port'; port 0 picks a free one."""
    raw = non_empty(value)
    host, sep, port = raw.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"must be HOST:PORT, got {raw!r}")
    return raw


def database_url(value: Any) -> str:
    raw = non_empty(value)
    if not re.match(r"^(sqlite|postgresql)(\+\w+)?://", raw):
        raise ValueError(
            "must be a sqlite:///PATH or postgresql+psycopg://USER@HOST/DB URL, "
            f"got {redact_url(raw)!r}"
        )
    return raw


def path(value: Any) -> Path:
    return Path(non_empty(value)).expanduser()


def redact_url(url: str) -> str:
    """A database URL fit for a log line: the password replaced by ***."""
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)


# ---- defaults that depend on the user's environment


def data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "dealerpulse"


def state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "dealerpulse"


def default_database_url() -> str:
    """The SQLite file of the embedded setup (`make run`, `dealerpulse up`)."""
    return f"sqlite:///{data_dir() / 'dealerpulse.db'}"


DB_OPTION = Option(
    "db",
    database_url,
    None,
    "database URL: sqlite:///PATH or postgresql+psycopg://USER@HOST/DB "
    "(default: the embedded SQLite file)",
    env=("DATABASE_URL", "DEALERPULSE_DB"),
)


# ---- argparse and layering


def add_options(parser: argparse.ArgumentParser, options: Iterable[Option]) -> None:
    """Flags default to None so that an absent flag falls through to env/file/default."""
    for option in options:
        envs = ", ".join(option.env_names)
        shown_default = "" if option.secret or option.default is None else option.default
        suffix = f" [env: {envs}; config key: {option.key}"
        suffix += f"; default: {shown_default}]" if shown_default != "" else "]"
        # Help texts are plain text ("CPU %"), argparse treats them as %-formats.
        help_text = (option.help + suffix).replace("%", "%%")
        if option.parse is boolean:
            parser.add_argument(
                option.cli_flag,
                dest=option.key,
                action=argparse.BooleanOptionalAction,
                default=None,
                help=help_text,
            )
        else:
            parser.add_argument(option.cli_flag, dest=option.key, default=None, help=help_text)


@dataclass(frozen=True)
class FileValues:
    """What a TOML file says: the command's own [section] and top-level keys all share."""

    own: Mapping[str, Any]
    shared: Mapping[str, Any]

    def get(self, key: str) -> tuple[Any, str] | None:
        if key in self.own:
            return self.own[key], f"config file key [{self.section}] {key}"
        if key in self.shared:
            return self.shared[key], f"config file key {key}"
        return None

    section: str = ""


def load_file(config_path: Path | None, section: str) -> FileValues:
    if config_path is None:
        return FileValues({}, {}, section)
    import tomllib  # only when there is a file: the agent usually runs without one

    try:
        document = tomllib.loads(config_path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file {config_path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {config_path} is not valid TOML: {exc}") from exc
    shared = {k: v for k, v in document.items() if not isinstance(v, dict)}
    own = document.get(section, {})
    if not isinstance(own, dict):
        raise ConfigError(f"config file {config_path}: [{section}] must be a table")
    return FileValues(own, shared, section)


def resolve(
    options: Iterable[Option],
    flags: Mapping[str, Any],
    env: Mapping[str, str],
    file_values: FileValues | None = None,
) -> dict[str, Any]:
    """Merge flag > env > file > default for each option and validate it."""
    options = list(options)
    file_values = file_values or FileValues({}, {})
    known = {o.key for o in options}
    unknown = sorted(set(file_values.own) - known)
    if unknown:
        raise ConfigError(
            f"config file [{file_values.section}]: unknown key {unknown[0]!r} "
            f"(known: {', '.join(sorted(known))})"
        )
    values: dict[str, Any] = {}
    for option in options:
        raw, origin = _pick(option, flags, env, file_values)
        if raw is None:
            values[option.key] = option.default
            continue
        try:
            values[option.key] = option.parse(raw)
        except ValueError as exc:
            shown = "***" if option.secret else repr(raw)
            raise ConfigError(f"{option.key}: invalid value {shown} from {origin}: {exc}") from None
    return values


def _pick(
    option: Option, flags: Mapping[str, Any], env: Mapping[str, str], file_values: FileValues
) -> tuple[Any, str]:
    if flags.get(option.key) is not None:
        return flags[option.key], f"flag {option.cli_flag}"
    for name in option.env_names:
        if env.get(name, "") != "":
            return env[name], f"environment variable {name}"
    found = file_values.get(option.key)
    if found is not None:
        return found
    return None, "default"
