"""Hands request records from the dealer's app to the agent without ever blocking it.

The request thread only appends to a bounded in-memory queue (a full queue
drops the record and counts it). A daemon thread drains the queue every
``flush_interval_s``, packs records into datagrams and sends them to the
agent's intake. Datagrams, not a stream: there is no connection to keep up,
and a dead or absent agent costs one failed system call per batch, never an
exception or a wait in the app. If the agent is alive but slow, the sender
thread waits at most ``send_timeout_s`` per datagram; meanwhile the queue
fills and drops, so the app still never waits.
"""

from __future__ import annotations

import atexit
import logging
import os
import socket
import threading
import weakref
from dataclasses import dataclass
from typing import Protocol

from agent.aggregate import RequestRecord
from agent.instrument.wire import (
    DEFAULT_MAX_DATAGRAM_BYTES,
    IntakeAddress,
    WireError,
    default_address,
    encode_record,
    pack_datagrams,
    parse_address,
)

logger = logging.getLogger(__name__)

DEFAULT_MAX_QUEUE = 10_000
DEFAULT_FLUSH_INTERVAL_S = 0.05
DEFAULT_SEND_TIMEOUT_S = 0.25


@dataclass(frozen=True, slots=True)
class SinkStats:
    accepted: int = 0
    # Dropped because the queue was full (the sender could not keep up).
    dropped_queue_full: int = 0
    # Records in datagrams the OS took for delivery to the agent.
    sent: int = 0
    # Records lost because the agent was absent or did not read in time.
    send_failed: int = 0
    # Records that could not be encoded (should not happen; counted anyway).
    unencodable: int = 0
    # Records still waiting in the queue.
    queued: int = 0


class RecordSink:
    """A bounded, non-blocking queue of RequestRecords, sent to the agent in the background."""

    def __init__(
        self,
        address: str | os.PathLike[str] | IntakeAddress | None = None,
        *,
        max_queue: int = DEFAULT_MAX_QUEUE,
        flush_interval_s: float = DEFAULT_FLUSH_INTERVAL_S,
        send_timeout_s: float = DEFAULT_SEND_TIMEOUT_S,
        max_datagram_bytes: int = DEFAULT_MAX_DATAGRAM_BYTES,
    ) -> None:
        if max_queue < 1:
            raise ValueError(f"max_queue must be >= 1, got {max_queue!r}")
        if not flush_interval_s >= 0 or not send_timeout_s > 0:
            raise ValueError("flush_interval_s must be >= 0 and send_timeout_s > 0")
        if address is None:
            address = default_address()
        self.address = address if isinstance(address, IntakeAddress) else parse_address(address)
        self._max_queue = max_queue
        self._flush_interval_s = flush_interval_s
        self._send_timeout_s = send_timeout_s
        self._max_datagram_bytes = max_datagram_bytes
        self._socket: socket.socket | None = None
        self._reset()
        self._agent_reachable = True
        _LIVE_SINKS.add(self)

    # ---- request thread side

    def offer(self, record: RequestRecord) -> bool:
        """Queue the record; never blocks, never raises. False when it was dropped."""
        with self._lock:
            if self._closing:
                return False
            if len(self._pending) >= self._max_queue:
                self._counts["dropped_queue_full"] += 1
                return False
            self._pending.append(record)
            self._counts["accepted"] += 1
            if self._thread is None:
                self._start_worker()
            first = len(self._pending) == 1
        if first:
            self._wake.set()
        return True

    def stats(self) -> SinkStats:
        with self._lock:
            counts = {k: v for k, v in self._counts.items() if k != "handled"}
            return SinkStats(**counts, queued=len(self._pending))

    def flush(self, timeout_s: float = 5.0) -> bool:
        """Wait until every record accepted so far was sent (or failed). True if done in time."""
        with self._lock:
            target = self._counts["accepted"]
            if self._counts["handled"] >= target:
                return True
            self._hurry.set()
            self._wake.set()
            return self._done.wait_for(lambda: self._counts["handled"] >= target, timeout_s)

    def close(self, timeout_s: float = 2.0) -> None:
        """Send what is queued (within timeout_s), then stop the thread. Idempotent."""
        with self._lock:
            self._closing = True
            thread = self._thread
        self._hurry.set()
        self._wake.set()
        if thread is not None:
            thread.join(timeout_s)
            if thread.is_alive():  # still sending: the socket is the thread's to close
                return
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    # ---- sender thread side

    def _reset(self) -> None:
        """Fresh counts, locks and no thread: at start, and in a forked child (whose
        copy of the parent's thread does not exist, and whose counts start at 0)."""
        # "handled" = sent + send_failed + unencodable: what flush() waits for.
        self._counts = dict.fromkeys(
            ("accepted", "dropped_queue_full", "sent", "send_failed", "unencodable", "handled"), 0
        )
        self._lock = threading.Lock()
        self._done = threading.Condition(self._lock)
        self._wake = threading.Event()
        self._hurry = threading.Event()
        self._pending: list[RequestRecord] = []
        self._thread: threading.Thread | None = None
        self._closing = False
        if self._socket is not None:  # in a child: our copy of the parent's socket
            self._socket.close()
            self._socket = None

    def _start_worker(self) -> None:
        thread = threading.Thread(target=self._run, name="dealerpulse-record-sink", daemon=True)
        try:
            thread.start()
        except RuntimeError as exc:  # no threads left: records queue up, then drop
            logger.warning("DealerPulse record sink cannot start its sender: %s", exc)
            return
        self._thread = thread

    def _run(self) -> None:
        while True:
            self._wake.wait()
            # Let a batch gather; flush() and close() cut the wait short.
            self._hurry.wait(self._flush_interval_s)
            with self._lock:
                batch, self._pending = self._pending, []
                self._wake.clear()
                if not self._closing:
                    self._hurry.clear()
                closing = self._closing
            try:
                self._send(batch)
            except Exception:  # the sender must outlive any surprise
                logger.exception("DealerPulse record sink failed to send %s records", len(batch))
                self._count("send_failed", len(batch))
            with self._lock:
                self._counts["handled"] += len(batch)
                self._done.notify_all()
                if closing and not self._pending:
                    return

    def _send(self, batch: list[RequestRecord]) -> None:
        lines: list[bytes] = []
        for record in batch:
            try:
                lines.append(encode_record(record, self._max_datagram_bytes))
            except WireError:
                self._count("unencodable", 1)
        for datagram in pack_datagrams(lines, self._max_datagram_bytes):
            records = datagram.count(b"\n")  # the header's newline plus one per extra line
            self._count("sent" if self._transmit(datagram) else "send_failed", records)

    def _transmit(self, datagram: bytes) -> bool:
        try:
            if self._socket is None:
                self._socket = self._connect()
            self._socket.send(datagram)
        except OSError as exc:
            if self._socket is not None:
                self._socket.close()
                self._socket = None
            if self._agent_reachable:
                logger.info(
                    "DealerPulse agent not reachable at %s (%s); API records are "
                    "dropped until it is",
                    self.address,
                    exc,
                )
                self._agent_reachable = False
            return False
        if not self._agent_reachable:
            logger.info("DealerPulse agent reachable again at %s", self.address)
            self._agent_reachable = True
        return True

    def _connect(self) -> socket.socket:
        # Connected, so that the kernel reports the agent's full queue as "not
        # writable" and send() waits (up to the timeout) instead of failing at once.
        if self.address.is_unix:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            target: str | tuple[str, int] = self.address.path
        else:
            family = socket.AF_INET6 if ":" in self.address.host else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_DGRAM)
            target = (self.address.host, self.address.port)
        try:
            sock.settimeout(self._send_timeout_s)
            sock.connect(target)
        except OSError:
            sock.close()
            raise
        return sock

    def _count(self, name: str, amount: int) -> None:
        with self._lock:
            self._counts[name] += amount


class Sink(Protocol):
    """What the middlewares hand records to. Must never block nor raise."""

    def offer(self, record: RequestRecord) -> bool: ...


class DisabledSink:
    """Takes records and drops them; used when the intake address is misconfigured."""

    def offer(self, record: RequestRecord) -> bool:
        return False


_LIVE_SINKS: weakref.WeakSet[RecordSink] = weakref.WeakSet()
_default_lock = threading.Lock()
_default: RecordSink | DisabledSink | None = None


def default_sink() -> RecordSink | DisabledSink:
    """The process-wide sink to $DEALERPULSE_INTAKE (or the platform default)."""
    global _default
    with _default_lock:
        if _default is None:
            try:
                sink = RecordSink()
            except (WireError, ValueError) as exc:
                logger.error("DealerPulse API metrics are off: bad intake address: %s", exc)
                _default = DisabledSink()
            else:
                atexit.register(sink.close, 1.0)
                _default = sink
        return _default


def _after_fork_in_child() -> None:
    for sink in list(_LIVE_SINKS):
        sink._reset()


os.register_at_fork(after_in_child=_after_fork_in_child)
