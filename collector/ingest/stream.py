"""One agent's Ingest.Stream: batches in, one ack per batch out, in commit order.

The receive loop never waits for a commit: it validates each batch, hands it
to the writer in its own task and reads on, so many batches of one stream are
in flight at once. Acks go out through a queue as their commits complete. A
semaphore bounds batches received but not yet acked; when it is exhausted the
loop stops reading and HTTP/2 flow control slows the agent down.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field

import grpc
from google.protobuf.message import DecodeError

from collector.abc import MetricStore
from collector.ingest import codec
from collector.ingest.auth import (
    DealerDirectory,
    NotAuthenticated,
    Principal,
    Role,
    TokenAuthenticator,
)
from collector.ingest.clock_offset import ClockOffsetTracker
from collector.ingest.errors import BatchRefused, Overloaded, StoreUnavailable
from collector.ingest.limits import DealerRateLimiter, SeriesLimiter, SeriesVerdict
from collector.ingest.validate import Caller, CheckedSeries, Limits, validate_batch
from collector.ingest.writer import BatchWriter
from dealerpulse.clock import Clock, unix_ms
from dealerpulse.model import MetricBatch, WriteOutcome
from dealerpulse.tokens import DEALER_ID_RE
from dealerpulse.v1 import ingest_pb2 as pb

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class StreamConfig:
    limits: Limits = field(default_factory=Limits)
    # Batches received but not yet acked, per stream.
    max_in_flight: int = 64
    # Suggested resend delay when the store is down.
    store_retry_after_s: float = 2.0
    # At most one rejection log line per stream per interval.
    rejection_log_interval_s: float = 10.0
    # A stream that sends no batch for this long is ended (None: never). Real
    # time, not the injected clock: it bounds what a stalled client holds.
    idle_timeout_s: float | None = 600.0
    # Series one agent may have; samples of more new series are not stored.
    max_series_per_agent: int = 10_000
    # Samples per second per dealer, across its streams (0: no limit).
    dealer_rate_limit: float = 0.0


@dataclass(frozen=True, slots=True)
class WriterPrincipal:
    """A caller allowed to write metrics (a dealer token), with its dealer."""

    principal: Principal
    dealer_id: str


def not_a_writer(principal: Principal) -> str:
    """Why ``principal`` may not send metrics."""
    if principal.role is Role.VIEWER:
        return (
            f"the viewer token of dealer {principal.dealer_id!r} is read-only; "
            "agents need the dealer's own token"
        )
    return "an admin token names no dealer and cannot send metrics; use the dealer's token"


class StreamIdle(Exception):
    """The client sent nothing for the idle timeout."""


class MalformedBatch(Exception):
    """The client sent bytes that are not a Batch message; the stream cannot go on."""


@dataclass(frozen=True, slots=True)
class StreamEnd:
    """The last item of a stream's ack queue: close OK (code None) or with a status."""

    code: grpc.StatusCode | None = None
    message: str = ""


@dataclass(frozen=True, slots=True)
class StreamDeps:
    writer: BatchWriter
    authenticator: TokenAuthenticator
    dealers: DealerDirectory
    clock: Clock
    config: StreamConfig
    series: SeriesLimiter
    # None: no per-dealer rate limit.
    rate_limiter: DealerRateLimiter | None = None
    # Where agents' clock offsets are recorded (None: not recorded).
    offsets_store: MetricStore | None = None


class StreamSession:
    def __init__(self, principal: WriterPrincipal, peer: str, deps: StreamDeps) -> None:
        self._principal = principal
        self._peer = peer
        self._deps = deps
        self._outgoing: asyncio.Queue[pb.Ack | StreamEnd] = asyncio.Queue()
        self._slots = asyncio.Semaphore(deps.config.max_in_flight)
        self._commits: set[asyncio.Task[None]] = set()
        self._receiver: asyncio.Task[None] | None = None
        self._closer: asyncio.Task[None] | None = None
        self._log = _RateLimitedLog(deps.clock, deps.config.rejection_log_interval_s)
        # One agent per stream: its series repeat in every batch.
        self._checked = CheckedSeries()
        store = deps.offsets_store
        self._clock_offset = ClockOffsetTracker(store, deps.clock) if store is not None else None

    async def run(
        self, requests: AsyncIterator[pb.Batch]
    ) -> AsyncGenerator[pb.Ack | StreamEnd, None]:
        """The acks to send; the last item is a StreamEnd saying how to close."""
        self._receiver = asyncio.create_task(self._receive(requests))
        try:
            while True:
                item = await self._outgoing.get()
                if isinstance(item, StreamEnd):
                    yield item
                    return
                self._slots.release()
                yield item
        finally:
            self._receiver.cancel()
            for task in list(self._commits):
                task.cancel()

    def stop_receiving(self) -> None:
        """Shutdown: read no more batches; once those in flight are acked, close UNAVAILABLE."""
        if self._receiver is not None:
            self._receiver.cancel()
        if self._closer is None:
            self._closer = asyncio.create_task(self._close_after_commits())

    async def _close_after_commits(self) -> None:
        if self._commits:
            await asyncio.wait(list(self._commits))
        self._outgoing.put_nowait(StreamEnd(grpc.StatusCode.UNAVAILABLE, "collector shutting down"))

    # ---- receiving

    async def _receive(self, requests: AsyncIterator[pb.Batch]) -> None:
        try:
            await self._read_all(requests)
        except NotAuthenticated as exc:
            end = StreamEnd(grpc.StatusCode.UNAUTHENTICATED, str(exc))
        except StreamIdle as exc:
            logger.info("ending ingest stream from %s: %s", self._peer, exc)
            end = StreamEnd(grpc.StatusCode.UNAVAILABLE, str(exc))
        except MalformedBatch as exc:
            # The client's fault, not ours: INVALID_ARGUMENT, never INTERNAL.
            logger.info("ending ingest stream from %s: %s", self._peer, exc)
            end = StreamEnd(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except Exception:
            # Without this the stream would hang: nothing else ends it.
            logger.exception("ingest stream from %s failed", self._peer)
            end = StreamEnd(grpc.StatusCode.INTERNAL, "collector error; resend unacked batches")
        else:
            # The agent closed its side: answer what is in flight, then end OK.
            if self._commits:
                await asyncio.wait(list(self._commits))
            end = StreamEnd()
        self._outgoing.put_nowait(end)

    async def _read_all(self, requests: AsyncIterator[pb.Batch]) -> None:
        batches = aiter(requests)
        while True:
            # Take a slot before reading, so that a full stream leaves the
            # agent's next batch in HTTP/2 flow control, not in our memory.
            await self._slots.acquire()
            idle_s = self._deps.config.idle_timeout_s
            try:
                async with asyncio.timeout(idle_s):
                    message = await anext(batches)
            except StopAsyncIteration:
                self._slots.release()
                return
            except TimeoutError:
                raise StreamIdle(f"no batch for {idle_s:g} s; reconnect to resume") from None
            except DecodeError as exc:
                # No seq to answer: the whole stream is refused, acked batches stay acked.
                raise MalformedBatch(f"batch: not a dealerpulse.v1.Batch message ({exc})") from None
            await self._accept(message)

    async def _accept(self, message: pb.Batch) -> None:
        """Validate one batch and either answer it now or start its commit."""
        deps = self._deps
        try:
            decoded = codec.decode_batch(message)
        except codec.ColumnsInvalid as exc:
            self._reject(codec.batch_header(message), exc.rejection)
            return
        batch = decoded.batch
        if self._clock_offset is not None and batch.created_ms > 0:
            # Before validation: refused batches (a clock far ahead) show their offset too.
            self._clock_offset.observe(
                self._principal.dealer_id, batch.agent_id, batch.created_ms, unix_ms(deps.clock)
            )
        try:
            await deps.authenticator.recheck(self._principal.principal)
            dealer_known = await self._dealer_known(batch.dealer_id)
        except StoreUnavailable as exc:
            self._send_retry(batch.seq, grpc.StatusCode.UNAVAILABLE, str(exc))
            return
        caller = Caller(
            token_dealer_id=self._principal.dealer_id,
            dealer_known=dealer_known,
            encoded_bytes=decoded.encoded_bytes,
            now_ms=unix_ms(deps.clock),
        )
        rejection = validate_batch(
            batch, caller, deps.config.limits, self._checked, decoded.row_samples
        )
        if rejection is not None:
            self._reject(batch, rejection)
            return
        if self._over_rate_limit(batch):
            return
        try:
            verdict = await deps.series.admit(batch)
        except StoreUnavailable as exc:
            self._send_retry(batch.seq, grpc.StatusCode.UNAVAILABLE, str(exc))
            return
        task = asyncio.create_task(self._commit(verdict))
        self._commits.add(task)
        task.add_done_callback(self._commits.discard)

    async def _dealer_known(self, dealer_id: str) -> bool:
        # The token proved its own dealer exists; others are looked up (cached)
        # only when a batch names one, which a correct agent never does.
        if dealer_id == self._principal.dealer_id:
            return True
        if not DEALER_ID_RE.match(dealer_id):
            return False
        return await self._deps.dealers.name_of(dealer_id) is not None

    def _over_rate_limit(self, batch: MetricBatch) -> bool:
        """Answer RETRY, and say True, when the dealer is over its samples/s limit."""
        limiter = self._deps.rate_limiter
        if limiter is None or not batch.samples:
            return False
        delay_s = limiter.delay_s(batch.dealer_id, len(batch.samples))
        if delay_s <= 0:
            return False
        message = (
            f"dealer {batch.dealer_id!r} is over its ingest rate limit of "
            f"{limiter.samples_per_s:g} samples/s (ingest_dealer_rate_limit); "
            f"retry after {delay_s:.2f} s"
        )
        self._send_retry(batch.seq, grpc.StatusCode.RESOURCE_EXHAUSTED, message, delay_s=delay_s)
        return True

    async def _commit(self, verdict: SeriesVerdict) -> None:
        batch = verdict.batch
        try:
            result = await self._deps.writer.submit(batch)
        except Overloaded as exc:
            self._send_retry(batch.seq, grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc), exc)
            return
        except StoreUnavailable as exc:
            self._send_retry(batch.seq, grpc.StatusCode.UNAVAILABLE, str(exc))
            return
        except BatchRefused as refused:
            self._reject(batch, refused.rejection)
            return
        if result.outcome is WriteOutcome.CONFLICT:
            self._log_rejection(batch, codec.conflict_rejection(batch.seq))
        if verdict.refused_samples and result.outcome is WriteOutcome.STORED:
            refusal = self._series_refusal(verdict)
            self._log_rejection(batch, refusal)
            self._outgoing.put_nowait(codec.encode_partly_stored(batch.seq, result, refusal))
            return
        self._outgoing.put_nowait(codec.encode_write_result(batch.seq, result))

    def _series_refusal(self, verdict: SeriesVerdict) -> codec.Rejection:
        limit = self._deps.series.max_series
        return codec.Rejection(
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "samples",
            f"samples: {verdict.refused_samples} samples of new series (first: "
            f"{verdict.first_refused!r}) not stored: agent {verdict.batch.agent_id!r} has "
            f"reached max_series_per_agent={limit}; samples of its existing series are stored",
        )

    # ---- answering

    def _reject(self, batch: MetricBatch, rejection: codec.Rejection) -> None:
        self._log_rejection(batch, rejection)
        self._outgoing.put_nowait(codec.encode_rejection(batch.seq, rejection))

    def _send_retry(
        self,
        seq: int,
        code: grpc.StatusCode,
        message: str,
        overloaded: Overloaded | None = None,
        *,
        delay_s: float | None = None,
    ) -> None:
        if delay_s is None:
            delay_s = (
                overloaded.retry_after_s if overloaded else self._deps.config.store_retry_after_s
            )
        self._outgoing.put_nowait(codec.encode_retry(seq, code, message, delay_s))

    def _log_rejection(self, batch: MetricBatch, rejection: codec.Rejection) -> None:
        suppressed = self._log.allow()
        if suppressed is None:
            return
        logger.warning(
            "rejected batch seq %s of agent %r (dealer %s, %s): %s %s%s",
            batch.seq,
            batch.agent_id,
            self._principal.dealer_id,
            self._peer,
            rejection.code.name,
            rejection.message,
            f" ({suppressed} more rejections not logged)" if suppressed else "",
        )


class _RateLimitedLog:
    """Lets one log line through per interval and counts the ones it held back."""

    def __init__(self, clock: Clock, interval_s: float) -> None:
        self._clock = clock
        self._interval_s = interval_s
        self._next_allowed = float("-inf")
        self._suppressed = 0

    def allow(self) -> int | None:
        """None to skip this line; otherwise how many were skipped since the last one."""
        now = self._clock.monotonic()
        if now < self._next_allowed:
            self._suppressed += 1
            return None
        suppressed, self._suppressed = self._suppressed, 0
        self._next_allowed = now + self._interval_s
        return suppressed
