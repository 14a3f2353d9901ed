"""Ships spooled batches to the collector over one gRPC bidirectional stream.

Per connection: ``Ingest.Hello`` (authenticate, learn the dealer), then one
``Ingest.Stream`` on which the spool's batches go out oldest first, within a
bounded in-flight window, followed by new batches as they are appended. Each
Ack settles one batch:

- STORED / DUPLICATE: the collector has it; it leaves the spool;
- REJECTED: refused for good; the spool drops it, counts it, records a gap;
  it is never resent;
- RETRY: the collector is overloaded; sending pauses for retry_after_ms and
  the batch is resent on the same stream.

When the stream breaks, the shipper reconnects after a bounded, jittered,
exponential backoff that gives way to the server's hint (a RETRY ack, the
``retry-after-ms`` trailing metadata), and resends everything not acked.
A refused token is logged plainly and retried slowly. ``stop()`` gives what
is in flight a bounded time to be acked and cuts any backoff short.

Sample form (rows or ``sample_columns``), the rule: a batch's form is chosen
once, when the spool encodes it, from the last Hello reply's
``accepts_sample_columns``, and its stored bytes never change. They go out
as stored, except that a columns batch goes to a rows-only collector (an
older one would silently store none of its samples) in its rows form, which
is a pure function of the stored bytes. So a batch has at most two
encodings, each byte-identical at every resend. The spool notes which went
out (before each write, across restarts); when a collector answers "seq
already stored with different content" for a batch that went out in both,
the other encoding was committed (by a collector of the other kind sharing
the store): that counts as a DUPLICATE. Any other conflict (a seq truly
reused, e.g. a spool re-created under a configured agent id) stays a
rejection, counted and reported as a gap.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio

from agent.backoff import BackoffPolicy
from agent.codec import Ack, AckStatus, Hello, rows_form
from agent.connection import (
    AckStream,
    Endpoint,
    describe,
    open_channel,
    open_stream,
    retry_hint_s,
    say_hello,
)
from agent.errors import AgentError, CodecError, ShipperError, SpoolError
from agent.spool import SENT_AS_ROWS_OF_COLUMNS, SENT_AS_STORED, SpooledBatch, SqliteSpool
from dealerpulse import __version__
from dealerpulse.clock import sleep_until_event
from dealerpulse.tokens import parse_token, redact

if TYPE_CHECKING:
    import random

logger = logging.getLogger(__name__)

AckCallback = Callable[[int, AckStatus, int], None]
"""on_ack(seq, status, samples_stored), called after the spool was updated."""
BackoffCallback = Callable[[float, str], None]
"""on_backoff(delay_s, reason), called before each wait to reconnect."""

_SLOW_CODES = frozenset(
    {
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.UNIMPLEMENTED,
    }
)


@dataclass(frozen=True, slots=True)
class ShipperSettings:
    max_in_flight_batches: int = 64
    max_in_flight_bytes: int = 8 * 1024 * 1024
    hello_timeout_s: float = 10.0
    # Pause after a RETRY ack that carries no retry_after_ms.
    default_retry_pause_s: float = 1.0
    # A batch unacknowledged this long means a wedged collector behind a live
    # connection (keepalives still pass): reconnect, maybe elsewhere, and resend.
    ack_timeout_s: float = 60.0

    def __post_init__(self) -> None:
        if self.max_in_flight_batches < 1 or self.max_in_flight_bytes < 1:
            raise ValueError(f"in-flight window must allow at least one batch: {self}")
        if self.ack_timeout_s <= 0 or self.hello_timeout_s <= 0:
            raise ValueError(f"timeouts must be positive: {self}")


@dataclass(frozen=True, slots=True)
class _Ended:
    """Why a connection ended and what that means for the wait before the next."""

    reason: str
    hint_s: float | None = None
    slow: bool = False
    progressed: bool = False


class Shipper:
    """Drains a SqliteSpool into a collector; see the module docstring."""

    def __init__(
        self,
        endpoint: Endpoint,
        spool: SqliteSpool,
        *,
        hostname: str = "",
        settings: ShipperSettings | None = None,
        backoff: BackoffPolicy | None = None,
        rng: random.Random | None = None,
        on_ack: AckCallback | None = None,
        on_backoff: BackoffCallback | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.spool = spool
        self.settings = settings or ShipperSettings()
        self.backoff = backoff or BackoffPolicy()
        self.hostname = hostname
        self.dealer_id: str | None = None
        self._expected_dealer = parse_token(endpoint.token).dealer_id
        # Made at the first backoff: a connected agent never needs random, which
        # costs 0.24 MiB resident with bisect and _sha512 (RSS before/after the import).
        self._rng = rng
        self._on_ack = on_ack
        self._on_backoff = on_backoff
        self._stopping = asyncio.Event()
        # Set when the spool may hold something new to send or the window opened.
        self._wake = asyncio.Event()
        # Set when a flush has nothing (more) to wait for: connected with nothing
        # in flight or left to send, or the connection is gone.
        self._settled = asyncio.Event()
        self._session: _Session | None = None

    @property
    def connected(self) -> bool:
        return self._session is not None

    def notify(self) -> None:
        """A batch was appended to the spool: send it without waiting for a poll."""
        self._settled.clear()
        self._wake.set()

    async def run(self) -> None:
        """Connect, ship, reconnect on failure; returns once stop() was called."""
        failures = 0
        while not self._stopping.is_set():
            ended = await self._until_stopped(self._connect_once())
            if ended is None:
                break
            if ended.progressed:
                failures = 0
            delay = self.backoff.delay(failures, self._backoff_rng(), ended.hint_s, ended.slow)
            failures += 1
            logger.info(
                "reconnecting to %s in %.1f s (%s)", self.endpoint.address, delay, ended.reason
            )
            if self._on_backoff is not None:
                self._on_backoff(delay, ended.reason)
            await sleep_until_event(self._stopping, delay)
        logger.info("shipper stopped")

    def _backoff_rng(self) -> random.Random:
        if self._rng is None:
            import random

            self._rng = random.Random()
        return self._rng

    async def stop(self, flush_timeout_s: float = 5.0) -> None:
        """Give in-flight batches up to flush_timeout_s to be acked, then stop.

        Not connected (in backoff, or connecting) means nothing can be acked:
        stop at once.
        """
        if self.connected and flush_timeout_s > 0:
            self._wake.set()
            if not await sleep_until_event(self._settled, flush_timeout_s):
                logger.warning("flush time (%.1f s) is up; stopping", flush_timeout_s)
        left = self.spool.stats().batches
        if left:
            logger.info("%s unacknowledged batches stay in the spool for the next start", left)
        self._stopping.set()

    async def _until_stopped(self, work: Coroutine[Any, Any, _Ended]) -> _Ended | None:
        """Run work (one connection) unless stop() comes first; then cancel it."""
        task = asyncio.create_task(work, name="dealerpulse-connection")
        stopping = asyncio.create_task(self._stopping.wait(), name="dealerpulse-stop")
        try:
            await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            if not task.done():
                task.cancel()
            await asyncio.gather(task, stopping, return_exceptions=True)
        if self._stopping.is_set() or task.cancelled():
            return None
        return task.result()

    # ---- one connection

    async def _connect_once(self) -> _Ended:
        channel = open_channel(self.endpoint)
        try:
            reply = await say_hello(
                channel, self.endpoint.token, self._hello(), self.settings.hello_timeout_s
            )
            self._learn_dealer(reply.dealer_id, reply.last_committed_seq)
            self.spool.use_sample_columns(reply.accepts_sample_columns)
            session = _Session(
                self, open_stream(channel, self.endpoint.token), reply.accepts_sample_columns
            )
            self._session = session
            self._settled.clear()
            try:
                return await session.run()
            finally:
                self._session = None
                self._settled.set()
        except grpc.aio.AioRpcError as exc:
            return self._classify(exc)
        except AgentError as exc:
            logger.error("shipping to %s failed: %s", self.endpoint.address, exc)
            return _Ended(str(exc))
        except Exception as exc:  # a bug must not end shipping for good
            logger.exception("unexpected error while shipping to %s", self.endpoint.address)
            return _Ended(repr(exc))
        finally:
            await channel.close(grace=None)

    def _hello(self) -> Hello:
        return Hello(self.spool.agent_id, self.hostname, __version__, self.spool.boot_id)

    def _learn_dealer(self, dealer_id: str, last_committed_seq: int) -> None:
        self.dealer_id = dealer_id
        logger.info(
            "connected to %s as dealer %s (collector has seq <= %s)",
            self.endpoint.address,
            dealer_id,
            last_committed_seq,
        )
        if dealer_id != self._expected_dealer:
            logger.error(
                "collector says this token is dealer %r but the token names %r; "
                "batches are stamped %r and may be refused",
                dealer_id,
                self._expected_dealer,
                self._expected_dealer,
            )

    def _classify(self, exc: grpc.aio.AioRpcError) -> _Ended:
        code = exc.code()
        if code in _SLOW_CODES:
            logger.error(
                "collector %s refused the agent (%s) with token %s; check the token "
                "and the address. Retrying slowly.",
                self.endpoint.address,
                describe(exc),
                redact(self.endpoint.token),
            )
        elif not self._stopping.is_set():
            logger.warning("connection to %s lost: %s", self.endpoint.address, describe(exc))
        return _Ended(describe(exc), retry_hint_s(exc), slow=code in _SLOW_CODES)


class _Session:
    """One Ingest.Stream: a sender and a receiver sharing the in-flight window."""

    def __init__(self, shipper: Shipper, stream: AckStream, accepts_columns: bool) -> None:
        self.shipper = shipper
        self.accepts_columns = accepts_columns
        self.spool = shipper.spool
        self.settings = shipper.settings
        self.stream = stream
        # seq -> (payload bytes, loop time sent)
        self.in_flight: dict[int, tuple[int, float]] = {}
        self.in_flight_bytes = 0
        self.cursor: int | None = None
        self.retries: set[int] = set()
        self.paused_until = 0.0
        self.progressed = False
        self._loop = asyncio.get_running_loop()

    async def run(self) -> _Ended:
        tasks = {
            asyncio.create_task(self._send_loop(), name="dealerpulse-send"),
            asyncio.create_task(self._receive_loop(), name="dealerpulse-receive"),
        }
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for task in done:
            error = task.exception()
            if isinstance(error, grpc.aio.AioRpcError):
                ended = self.shipper._classify(error)
                return _Ended(ended.reason, ended.hint_s, ended.slow, self.progressed)
            if isinstance(error, ShipperError):
                logger.warning("leaving %s: %s", self.shipper.endpoint.address, error)
                return _Ended(str(error), progressed=self.progressed)
            if error is not None:
                raise error
        return _Ended("the collector closed the stream", progressed=self.progressed)

    # ---- sending

    async def _send_loop(self) -> None:
        wake = self.shipper._wake
        while True:
            wake.clear()
            await self._sleep_out_pause()
            await self._send_what_fits()
            if not self.in_flight and not self.retries and self._nothing_pending():
                self.shipper._settled.set()
            await wake.wait()

    async def _sleep_out_pause(self) -> None:
        remaining = self.paused_until - self._loop.time()
        if remaining > 0:
            await asyncio.sleep(remaining)

    async def _send_what_fits(self) -> None:
        while self.retries and self._has_room(0):
            seq = min(self.retries)
            self.retries.discard(seq)
            batch = self.spool.load(seq)
            if batch is not None:  # else settled meanwhile
                await self._send(batch)
        while self._has_room(0):
            # Size first, payload only when it fits: a backlog of 2 MiB
            # batches must not be read into memory all at once.
            upcoming = self.spool.next_after(self.cursor)
            if upcoming is None or not self._has_room(upcoming.size):
                return
            batch = self.spool.load(upcoming.seq)
            if batch is None:  # dropped meanwhile
                self.cursor = upcoming.seq
                continue
            await self._send(batch)

    def _has_room(self, size: int) -> bool:
        if self.paused_until > self._loop.time():
            return False
        if len(self.in_flight) >= self.settings.max_in_flight_batches:
            return False
        # One batch may always be in flight, however large.
        limit = self.settings.max_in_flight_bytes
        return not self.in_flight or self.in_flight_bytes + size <= limit

    def _nothing_pending(self) -> bool:
        return not self.spool.pending(after_seq=self.cursor, limit=1)

    async def _send(self, batch: SpooledBatch) -> None:
        payload = self._wire_form(batch)
        self._note_sent(batch.seq, converted=payload is not batch.payload)
        self.in_flight[batch.seq] = (len(payload), self._loop.time())
        self.in_flight_bytes += len(payload)
        self.cursor = batch.seq if self.cursor is None else max(self.cursor, batch.seq)
        await self.stream.write(payload)

    def _note_sent(self, seq: int, *, converted: bool) -> None:
        try:
            self.spool.note_sent(seq, SENT_AS_ROWS_OF_COLUMNS if converted else SENT_AS_STORED)
        except SpoolError as exc:
            # A full disk must not stop the acks that free it. Without the note,
            # a form conflict on this batch is counted as a rejection: a false
            # loss in the counters, never a loss that goes unreported.
            logger.warning("spool: cannot note how seq %s was sent: %s", seq, exc)

    def _wire_form(self, batch: SpooledBatch) -> bytes:
        """The stored bytes, or their rows form for a collector that reads rows only."""
        if self.accepts_columns:
            return batch.payload
        try:
            return rows_form(batch.payload)
        except CodecError as exc:
            # A corrupted spool row: send it as it is, the collector rejects it
            # and the spool counts the loss, rather than wedging the stream.
            logger.error("spooled batch seq %s: %s", batch.seq, exc)
            return batch.payload

    # ---- receiving

    def _has_two_forms(self, seq: int) -> bool:
        """Whether the batch went out both as stored (columns) and in its rows form."""
        both = SENT_AS_STORED | SENT_AS_ROWS_OF_COLUMNS
        return self.spool.sent_forms(seq) & both == both

    async def _receive_loop(self) -> None:
        # The pending read survives the deadline checks: cancelling a read
        # would cancel the whole call.
        read: asyncio.Future[object] | None = None
        try:
            while True:
                if read is None:
                    read = asyncio.ensure_future(self.stream.read())
                done, _ = await asyncio.wait({read}, timeout=self.settings.ack_timeout_s / 4)
                if not done:
                    self._check_ack_deadline()
                    continue
                ack, read = read.result(), None
                if not isinstance(ack, Ack):  # grpc.aio.EOF: the server ended the stream
                    return
                self._settle(ack)
                self.shipper._wake.set()
        finally:
            if read is not None:
                read.cancel()

    def _check_ack_deadline(self) -> None:
        if not self.in_flight:
            return
        waited = self._loop.time() - min(sent for _, sent in self.in_flight.values())
        if waited > self.settings.ack_timeout_s:
            raise ShipperError(
                f"no ack for {waited:.0f} s with {len(self.in_flight)} batches in flight"
            )

    def _settle(self, ack: Ack) -> None:
        sent = self.in_flight.pop(ack.seq, None)
        if sent is not None:
            self.in_flight_bytes -= sent[0]
        if ack.is_seq_conflict and self._has_two_forms(ack.seq):
            logger.info(
                "collector has seq %s in its other sample form already; counted as duplicate",
                ack.seq,
            )
            ack = Ack(ack.seq, AckStatus.DUPLICATE)
        if ack.status in (AckStatus.STORED, AckStatus.DUPLICATE):
            self.spool.ack(ack.seq)
            self.progressed = True
        elif ack.status is AckStatus.REJECTED:
            self.spool.reject(ack.seq)
            self.progressed = True
            logger.warning(
                "collector rejected batch seq %s for good (code %s, field %r): %s",
                ack.seq,
                ack.code,
                ack.field,
                ack.message,
            )
        else:
            pause_s = ack.retry_after_ms / 1000 or self.settings.default_retry_pause_s
            if ack.status is not AckStatus.RETRY:
                logger.warning("ack for seq %s has no usable status; resending it", ack.seq)
            self.retries.add(ack.seq)
            self.paused_until = max(self.paused_until, self._loop.time() + pause_s)
            logger.info("collector asked to retry seq %s in %.2f s", ack.seq, pause_s)
        if self.shipper._on_ack is not None:
            self.shipper._on_ack(ack.seq, ack.status, ack.samples_stored)
