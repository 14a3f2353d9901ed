"""The agent's settings: the option list for ``dealerpulse agent`` and AgentConfig.

Light on purpose (no grpc, no protobuf): the CLI imports this to build its
parser, and ``--help`` should not pay for the wire stack.

The CLI resolves the options through :mod:`dealerpulse.config` and builds the
config with :meth:`AgentConfig.from_values`::

    values = resolve(AGENT_OPTIONS, vars(args), os.environ, load_file(path, "agent"))
    config = AgentConfig.from_values(values)
"""

from __future__ import annotations

import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dealerpulse.config import (
    ConfigError,
    Option,
    byte_size,
    host_port,
    non_empty,
    optional_text,
    path,
    positive_float,
    state_dir,
)
from dealerpulse.tokens import parse_token

if TYPE_CHECKING:
    from agent.instrument.wire import IntakeAddress
    from agent.probes import ProbeSpec

DEFAULT_INTERVAL_S = 10.0
DEFAULT_SPOOL_MAX_BYTES = 256 * 1024**2
SPOOL_FILE_NAME = "agent-spool.db"
_AGENT_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")


def validate_agent_id(agent_id: str) -> str:
    if not _AGENT_ID_RE.match(agent_id):
        raise ValueError(
            f"agent id {agent_id!r} must be 1-128 characters of letters, digits and . _ : -, "
            "starting with a letter or digit"
        )
    return agent_id


def token_value(value: Any) -> str:
    """A dealer token; checked for form only (the collector checks the secret)."""
    token = non_empty(value)
    parse_token(token)  # TokenError is a ValueError: resolve() names the key
    return token


def optional_agent_id(value: Any) -> str | None:
    text = optional_text(value)
    return None if text is None else validate_agent_id(text.strip())


def optional_path(value: Any) -> Path | None:
    return None if value is None or value == "" else path(value)


def interval_value(value: Any) -> float:
    interval = positive_float(value)
    if interval < 0.01 or interval > 3600:
        raise ValueError(f"must be between 0.01 and 3600 seconds, got {value!r}")
    return interval


# Values of the intake option that switch the API intake off.
INTAKE_OFF = frozenset({"off", "none", "disabled", "false", "no"})


def intake_value(value: Any) -> str:
    """An intake address (a socket path or udp://LOOPBACK:PORT), or "off"."""
    raw = non_empty(value)
    if raw.lower() in INTAKE_OFF:
        return "off"
    # Imported here: the wire module is light, but --help needs none of it.
    from agent.instrument.wire import WireError, parse_address

    try:
        parse_address(raw)
    except WireError as exc:
        raise ValueError(str(exc)) from None
    return raw


def probes_value(value: Any) -> tuple[ProbeSpec, ...]:
    """Probes from TOML (a list of tables or URLs) or a flag/env (URLs split by spaces)."""
    from agent.probes import parse_probes

    return parse_probes(value)


AGENT_OPTIONS: tuple[Option, ...] = (
    Option("collector", host_port, None, "collector address HOST:PORT"),
    Option(
        "token",
        token_value,
        None,
        "dealer token dp1.<dealer_id>.<secret> (prefer the environment variable)",
        env=("DEALERPULSE_TOKEN",),
        secret=True,
    ),
    Option(
        "interval",
        interval_value,
        DEFAULT_INTERVAL_S,
        "sampling interval in seconds; samples are taken on multiples of it",
    ),
    Option(
        "spool",
        optional_path,
        None,
        f"spool file for unacknowledged batches (default: STATE_DIR/{SPOOL_FILE_NAME}, "
        "STATE_DIR being $XDG_STATE_HOME/dealerpulse)",
    ),
    Option(
        "spool_max_bytes",
        byte_size,
        DEFAULT_SPOOL_MAX_BYTES,
        "largest spool size before the oldest batches are dropped, e.g. 256MiB",
    ),
    Option("agent_id", optional_agent_id, None, "agent id (default: generated once, kept)"),
    Option("hostname", optional_text, None, "host name reported (default: this host's name)"),
    Option("tls_ca", optional_path, None, "PEM file of CA certificates: connect with TLS"),
    Option("tls_cert", optional_path, None, "PEM client certificate for mutual TLS"),
    Option("tls_key", optional_path, None, "PEM private key of --tls-cert"),
    Option(
        "intake",
        intake_value,
        None,
        "where the dealer's apps send API request records: a unix socket path or "
        "udp://127.0.0.1:PORT; 'off' disables API metrics (default: /run/dealerpulse/intake.sock)",
        env=("DEALERPULSE_INTAKE",),
    ),
    Option(
        "probes",
        probes_value,
        (),
        "synthetic HTTP probes: in the config file a list of tables {url, name, method, "
        "interval_s, timeout_s, expected_status, body_contains}; as env/flag URLs separated "
        "by spaces (or repeat --probe URL)",
    ),
)


@dataclass(frozen=True, slots=True)
class TlsFiles:
    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None


@dataclass(frozen=True, slots=True)
class AgentConfig:
    collector: str
    token: str = field(repr=False)
    interval_s: float = DEFAULT_INTERVAL_S
    spool_path: Path = field(default_factory=lambda: state_dir() / SPOOL_FILE_NAME)
    spool_max_bytes: int = DEFAULT_SPOOL_MAX_BYTES
    agent_id: str | None = None
    hostname: str = field(default_factory=socket.gethostname)
    tls: TlsFiles | None = None
    # Where the API intake listens; None: no intake (the CLI default is
    # agent.instrument.wire.default_address(), see from_values).
    intake: IntakeAddress | None = None
    probes: tuple[ProbeSpec, ...] = ()

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> AgentConfig:
        """Build from resolve(AGENT_OPTIONS, ...) output; ConfigError names what is missing."""
        for key in ("collector", "token"):
            if values.get(key) is None:
                flag = "--" + key
                raise ConfigError(f"{key}: required (flag {flag}, or see --help for env/config)")
        tls = TlsFiles(values.get("tls_ca"), values.get("tls_cert"), values.get("tls_key"))
        if (tls.cert is None) != (tls.key is None):
            raise ConfigError("tls_cert and tls_key: give both for mutual TLS, or neither")
        uses_tls = tls.ca is not None or tls.cert is not None
        return cls(
            collector=values["collector"],
            token=values["token"],
            interval_s=values.get("interval") or DEFAULT_INTERVAL_S,
            spool_path=values.get("spool") or state_dir() / SPOOL_FILE_NAME,
            spool_max_bytes=values.get("spool_max_bytes") or DEFAULT_SPOOL_MAX_BYTES,
            agent_id=values.get("agent_id"),
            hostname=values.get("hostname") or socket.gethostname(),
            tls=tls if uses_tls else None,
            intake=_intake_address(values.get("intake")),
            probes=tuple(values.get("probes") or ()),
        )

    @property
    def dealer_id(self) -> str:
        """The dealer this agent reports for, read from the token."""
        return parse_token(self.token).dealer_id


def _intake_address(value: str | None) -> IntakeAddress | None:
    from agent.instrument.wire import WireError, default_address, parse_address

    if value == "off":
        return None
    try:
        return default_address() if value is None else parse_address(value)
    except WireError as exc:  # a bad $DEALERPULSE_INTAKE read by default_address()
        raise ConfigError(f"intake: {exc}") from None
