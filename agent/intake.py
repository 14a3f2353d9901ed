"""The agent's local intake: datagrams of request records from the dealer's app.

Primary channel: a unix datagram socket. Datagrams keep the app independent of
the agent: the app never waits for a connection or an answer, and a dead
agent costs it one failed system call per batch. A unix socket rather than
UDP because file permissions decide who may send, it can never be reached from
the network, it needs no free port, and a full receive queue is reported to
the sender (which then waits briefly or counts a drop) where loopback UDP drops
in silence. Loopback UDP (``udp://127.0.0.1:PORT``) remains for platforms
without unix datagram sockets (Windows) and for containers that share only
the network with the app.

Every datagram is validated; a bad one (or a bad line in one) is counted and
dropped, and never stops the listener.
"""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import socket
import stat
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from agent.abc import Source
from agent.aggregate import EndpointAggregator, RequestRecord
from agent.instrument.wire import (
    IntakeAddress,
    WireError,
    decode_datagram,
    default_address,
    parse_address,
)
from dealerpulse.model import Sample

logger = logging.getLogger(__name__)

__all__ = [
    "IntakeCountersSource",
    "IntakeError",
    "IntakeServer",
    "IntakeStats",
    "RecordConsumer",
    "default_address",
]

# Anyone on the host may send by default: the app usually runs as another user
# than the agent, and a record can do no more than add a sample. Pass 0o660
# and share a group with the app to restrict it.
DEFAULT_SOCKET_MODE = 0o666
_RECEIVE_BUFFER_BYTES = 4 * 1024 * 1024
_MAX_DATAGRAM = 65536
# Datagrams read per wake-up before checking for stop again.
_BURST = 256
# Datagrams still queued at stop() that are read before closing.
_FINAL_DRAIN = 10_000


class IntakeError(Exception):
    """The intake could not start: bad address, socket in use, no permission."""


class RecordConsumer(Protocol):
    def record(self, record: RequestRecord) -> None: ...


@dataclass(frozen=True, slots=True)
class IntakeStats:
    datagrams: int = 0
    records: int = 0
    # Datagrams that were not ours at all (bad header, not UTF-8), dropped whole.
    bad_datagrams: int = 0
    # Lines refused inside otherwise good datagrams.
    bad_records: int = 0


class IntakeServer:
    """Listens for record datagrams and feeds them to a consumer (the aggregator)."""

    def __init__(
        self,
        consumer: RecordConsumer,
        address: str | os.PathLike[str] | IntakeAddress | None = None,
        *,
        socket_mode: int = DEFAULT_SOCKET_MODE,
    ) -> None:
        try:
            if address is None:
                address = default_address()
            elif not isinstance(address, IntakeAddress):
                address = parse_address(address)
        except WireError as exc:
            raise IntakeError(str(exc)) from exc
        self._consumer = consumer
        self._requested = address
        self._socket_mode = socket_mode
        self._bound: IntakeAddress | None = None
        self._socket: socket.socket | None = None
        self._inode: tuple[int, int] | None = None
        self._wake_r, self._wake_w = socket.socketpair()
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._stats = IntakeStats()

    @property
    def address(self) -> IntakeAddress:
        """The bound address (the real port when udp port 0 was asked for)."""
        return self._bound or self._requested

    def stats(self) -> IntakeStats:
        with self._lock:
            return self._stats

    def start(self) -> IntakeAddress:
        if self._thread is not None:
            raise IntakeError("intake server already started")
        try:
            self._socket = self._bind()
        except OSError as exc:
            raise IntakeError(f"cannot listen on {self._requested}: {exc}") from exc
        self._thread = threading.Thread(
            target=self._serve, args=(self._socket,), name="dealerpulse-intake", daemon=True
        )
        self._thread.start()
        logger.info("API intake listening on %s", self.address)
        return self.address

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop listening and remove the socket file. Idempotent."""
        self._stopping.set()
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
        if self._thread is not None:
            self._thread.join(timeout_s)
        if self._socket is not None:
            self._socket.close()
            self._socket = None
            self._remove_own_socket_file()
        self._wake_r.close()
        self._wake_w.close()

    def __enter__(self) -> IntakeServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # ---- binding

    def _bind(self) -> socket.socket:
        if self._requested.is_unix:
            return self._bind_unix(Path(self._requested.path))
        family = socket.AF_INET6 if ":" in self._requested.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            self._enlarge_buffer(sock)
            sock.bind((self._requested.host, self._requested.port))
        except OSError:
            sock.close()
            raise
        host, port = sock.getsockname()[:2]
        self._bound = IntakeAddress(host=host, port=port)
        return sock

    def _bind_unix(self, path: Path) -> socket.socket:
        path.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_socket(path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            self._enlarge_buffer(sock)
            sock.bind(str(path))
            os.chmod(path, self._socket_mode)
            info = path.stat()
        except OSError:
            sock.close()
            raise
        self._inode = (info.st_dev, info.st_ino)
        self._bound = IntakeAddress(path=str(path))
        return sock

    @staticmethod
    def _enlarge_buffer(sock: socket.socket) -> None:
        # Room for bursts; the kernel caps it at its own maximum without error.
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RECEIVE_BUFFER_BYTES)

    def _remove_own_socket_file(self) -> None:
        """Unlink the socket file only if it is still ours (not a newer agent's)."""
        if self._bound is None or not self._bound.is_unix or self._inode is None:
            return
        path = Path(self._bound.path)
        with contextlib.suppress(OSError):
            info = path.stat()
            if (info.st_dev, info.st_ino) == self._inode:
                path.unlink()

    # ---- serving

    def _serve(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        with selectors.DefaultSelector() as selector:
            selector.register(sock, selectors.EVENT_READ)
            selector.register(self._wake_r, selectors.EVENT_READ)
            while not self._stopping.is_set():
                selector.select()
                self._read_burst(sock, _BURST)
        # What senders handed over before stop() is still worth recording.
        self._read_burst(sock, _FINAL_DRAIN, until_stopped=False)

    def _read_burst(self, sock: socket.socket, limit: int, *, until_stopped: bool = True) -> None:
        for _ in range(limit):
            if until_stopped and self._stopping.is_set():
                return
            try:
                data = sock.recv(_MAX_DATAGRAM)
            except BlockingIOError:
                return
            except OSError as exc:
                logger.warning("intake receive failed: %s", exc)
                return
            self._handle(data)

    def _handle(self, data: bytes) -> None:
        try:
            decoded = decode_datagram(data)
        except WireError as exc:
            if self._count(bad_datagrams=1).bad_datagrams == 1:
                logger.warning("intake dropped a datagram (further ones logged at debug): %s", exc)
            else:
                logger.debug("intake dropped a datagram: %s", exc)
            return
        for reason in decoded.rejected:
            logger.debug("intake dropped a record: %s", reason)
        accepted = 0
        for record in decoded.records:
            try:
                self._consumer.record(record)
                accepted += 1
            except Exception:
                logger.exception("intake consumer failed on a record of %s", record.route)
        refused = len(decoded.rejected) + len(decoded.records) - accepted
        self._count(datagrams=1, records=accepted, bad_records=refused)

    def _count(
        self, datagrams: int = 0, records: int = 0, bad_datagrams: int = 0, bad_records: int = 0
    ) -> IntakeStats:
        with self._lock:
            old = self._stats
            self._stats = IntakeStats(
                old.datagrams + datagrams,
                old.records + records,
                old.bad_datagrams + bad_datagrams,
                old.bad_records + bad_records,
            )
            return self._stats


class IntakeCountersSource(Source):
    """The intake's and aggregator's running totals as samples, so that garbage
    datagrams and endpoint overflow are visible centrally, not only in a log."""

    name = "api_intake"

    def __init__(self, server: IntakeServer, aggregator: EndpointAggregator) -> None:
        self._server = server
        self._aggregator = aggregator

    def collect(self, now_ms: int) -> list[Sample]:
        stats = self._server.stats()
        totals = {
            "api.intake.datagrams": stats.datagrams,
            "api.intake.records": stats.records,
            "api.intake.bad_datagrams": stats.bad_datagrams,
            "api.intake.bad_records": stats.bad_records,
            "api.endpoints.overflow_records": self._aggregator.overflow_records,
        }
        return [Sample(name, float(value), "count", now_ms) for name, value in totals.items()]


def _remove_stale_socket(path: Path) -> None:
    """Remove a socket file left by a dead agent; refuse to steal a live one's."""
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise IntakeError(f"{path} exists and is not a socket; refusing to replace it")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        probe.connect(str(path))
    except ConnectionRefusedError:
        path.unlink(missing_ok=True)  # nobody listens: a leftover
        return
    except OSError as exc:
        raise IntakeError(f"cannot check socket {path}: {exc}") from exc
    finally:
        probe.close()
    raise IntakeError(f"another process is listening on {path}")
