"""The intake wire format and addresses, shared by the app-side sink and the agent.

A datagram is ``DP1\\n`` followed by one record per line, each a JSON array
``[route, method, status_code, duration_ms, time_ms, error]``. JSON because an
error message may hold any character; arrays because they are compact and
have exactly one valid shape. Several records share a datagram to save system
calls; a datagram stays under ``max_bytes`` (8 KiB by default, 2 KiB on macOS).

Addresses: a filesystem path means a unix datagram socket (the primary
channel); ``udp://127.0.0.1:PORT`` or ``udp://[::1]:PORT`` means loopback
UDP (for platforms without unix datagram sockets, or containers that share
the network but not a volume).
"""

from __future__ import annotations

import ipaddress
import json
import os
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from agent.aggregate import MAX_ERROR_CHARS, InvalidRecord, RequestRecord

HEADER = b"DP1\n"
# macOS refuses unix datagrams over 2 KiB unless net.local.dgram.maxdgram is raised.
DEFAULT_MAX_DATAGRAM_BYTES = 2048 if sys.platform == "darwin" else 8192
INTAKE_ENV = "DEALERPULSE_INTAKE"
DEFAULT_UNIX_PATH = "/run/dealerpulse/intake.sock"
DEFAULT_UDP_ADDRESS = "udp://127.0.0.1:47170"
# When one record alone is too big, its error message is cut to this first.
_SHORT_ERROR_CHARS = 200


class WireError(ValueError):
    """A datagram or address that does not follow the intake format."""


@dataclass(frozen=True, slots=True)
class IntakeAddress:
    """Where the agent listens: a unix socket path, or a loopback UDP host and port."""

    path: str = ""
    host: str = ""
    port: int = 0

    @property
    def is_unix(self) -> bool:
        return bool(self.path)

    def __str__(self) -> str:
        if self.is_unix:
            return self.path
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"udp://{host}:{self.port}"


def parse_address(text: str | os.PathLike[str]) -> IntakeAddress:
    """A path, or udp://LOOPBACK_HOST:PORT (port 0 lets the server pick one)."""
    raw = os.fspath(text).strip()
    if not raw:
        raise WireError("intake address must not be empty")
    if not raw.startswith("udp://"):
        return IntakeAddress(path=raw)
    host, sep, port = raw.removeprefix("udp://").rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise WireError(f"intake address must be udp://HOST:PORT, got {raw!r}")
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise WireError(f"intake UDP host must be a loopback IP address, got {host!r}")
    return IntakeAddress(host=host, port=int(port))


def default_address() -> IntakeAddress:
    """$DEALERPULSE_INTAKE, else the platform's default channel."""
    configured = os.environ.get(INTAKE_ENV, "")
    if configured.strip():
        return parse_address(configured)
    if sys.platform == "win32":  # no unix datagram sockets there
        return parse_address(DEFAULT_UDP_ADDRESS)
    return IntakeAddress(path=DEFAULT_UNIX_PATH)


# ---- encoding (app side)


def encode_record(record: RequestRecord, max_bytes: int = DEFAULT_MAX_DATAGRAM_BYTES) -> bytes:
    """One line (no newline); the error is shortened, if needed, to fit a datagram."""
    line = _dump(record, record.error)
    if len(line) + len(HEADER) > max_bytes:
        line = _dump(record, record.error[:_SHORT_ERROR_CHARS])
    if len(line) + len(HEADER) > max_bytes:
        raise WireError(f"record of route {record.route[:60]!r} does not fit in {max_bytes} bytes")
    return line


def pack_datagrams(
    lines: Iterable[bytes], max_bytes: int = DEFAULT_MAX_DATAGRAM_BYTES
) -> Iterator[bytes]:
    """Greedy packing of encoded lines into datagrams of at most max_bytes."""
    chunk = bytearray(HEADER)
    for line in lines:
        if len(chunk) > len(HEADER) and len(chunk) + 1 + len(line) > max_bytes:
            yield bytes(chunk)
            chunk = bytearray(HEADER)
        if len(chunk) > len(HEADER):
            chunk += b"\n"
        chunk += line
    if len(chunk) > len(HEADER):
        yield bytes(chunk)


def _dump(record: RequestRecord, error: str) -> bytes:
    fields = [
        record.route,
        record.method,
        record.status_code,
        record.duration_ms,
        record.time_ms,
        error,
    ]
    return json.dumps(fields, ensure_ascii=False, separators=(",", ":")).encode()


# ---- decoding (agent side)


@dataclass(frozen=True, slots=True)
class Decoded:
    records: tuple[RequestRecord, ...]
    # One message per line that was refused; the line's number is in it.
    rejected: tuple[str, ...]


def decode_datagram(data: bytes) -> Decoded:
    """Records of one datagram. Raises WireError when the datagram as a whole is
    not ours; a bad line is rejected alone and the good ones are kept."""
    if not data.startswith(HEADER):
        raise WireError(f"datagram does not start with {HEADER!r}: {bytes(data[:8])!r}")
    try:
        text = data[len(HEADER) :].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise WireError(f"datagram is not UTF-8: {exc}") from exc
    records: list[RequestRecord] = []
    rejected: list[str] = []
    for number, line in enumerate(text.split("\n"), start=1):
        try:
            records.append(decode_line(line))
        except WireError as exc:
            rejected.append(f"line {number}: {exc}")
    return Decoded(tuple(records), tuple(rejected))


def decode_line(line: str) -> RequestRecord:
    try:
        fields = json.loads(line, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as exc:  # deep nesting is a hostile datagram
        raise WireError(f"not JSON: {exc}") from exc
    if not isinstance(fields, list) or len(fields) != 6:
        raise WireError("a record must be a JSON array of 6 fields")
    route, method, status, duration, time_ms, error = fields
    _expect("status_code", status, int)
    _expect("duration_ms", duration, (int, float))
    _expect("time_ms", time_ms, int)
    if isinstance(error, str) and len(error) > MAX_ERROR_CHARS:
        raise WireError(f"error longer than {MAX_ERROR_CHARS} characters")
    try:
        return RequestRecord(route, method, status, float(duration), time_ms, error)
    except InvalidRecord as exc:
        raise WireError(str(exc)) from exc


def _expect(name: str, value: Any, kinds: type | tuple[type, ...]) -> None:
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise WireError(f"{name} has the wrong type: {value!r}")


def _refuse_constant(name: str) -> Any:
    raise WireError(f"{name} is not a valid number")
