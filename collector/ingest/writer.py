"""Group commit: writer threads write the batches of every stream, many per transaction.

Streams hand batches to :meth:`BatchWriter.submit` and await the result. The
queue is bounded in samples, so a slow database turns into fast
:class:`Overloaded` answers (the agent keeps the batch in its spool) instead of
memory growth. There is one queue and thread per shard (usually one; two on
PostgreSQL), and an agent's batches always go to the same shard, so two
transactions in flight never touch one agent's rows and its batches keep their
order. A shard's thread takes whatever its queue holds, up to
``max_group_samples``, and commits it with ONE ``store.write_batches`` call;
only after that call has returned -- the transaction committed -- does any
submitter learn its result, so an ack always means "durably stored".

A failing group is retried with backoff when the database may come back. When
the store refuses the group's content instead (one agent id claimed by two
dealers, a row the database will not take), the group is split in halves until
the culprit is alone, so one bad batch cannot hold back every other agent.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import grpc

from collector.abc import MetricStore, StoreError, UnknownDealer
from collector.ingest.codec import Rejection
from collector.ingest.errors import BatchRefused, Overloaded, StoreUnavailable, WriterClosed
from collector.ingest.timings import WriterTimings
from collector.store.errors import AgentConflict, StoreWriteError
from dealerpulse.clock import Clock
from dealerpulse.model import MetricBatch, WriteOutcome, WriteResult

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class WriterStats:
    """A snapshot for /metrics and tests."""

    queued_batches: int
    queued_samples: int
    groups_committed: int
    batches_committed: int
    samples_written: int
    groups_failed: int
    submissions_refused: int
    last_group_batches: int
    last_group_latency_s: float


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How long the writer insists on a failing store before giving a group up."""

    attempts: int = 5
    base_delay_s: float = 0.1
    max_delay_s: float = 2.0

    def delay_s(self, attempt: int) -> float:
        return float(min(self.max_delay_s, self.base_delay_s * 2 ** (attempt - 1)))


@dataclass(slots=True)
class _Pending:
    batch: MetricBatch
    weight: int
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[WriteResult]
    queued_at: float  # the writer clock's monotonic time at submit


def batch_weight(batch: MetricBatch) -> int:
    """What a batch costs in the queue: its rows, at least one."""
    return max(1, len(batch.samples) + len(batch.endpoints))


class BatchWriter:
    """A bounded queue drained by one dedicated thread into group commits."""

    def __init__(
        self,
        store: MetricStore,
        *,
        max_queue_samples: int,
        max_group_samples: int,
        max_group_delay_s: float,
        clock: Clock,
        retry: RetryPolicy | None = None,
        retry_after_bounds_s: tuple[float, float] = (0.1, 10.0),
        on_committed: Callable[[Sequence[MetricBatch]], None] | None = None,
        shards: int = 1,
    ) -> None:
        if max_queue_samples < 1 or max_group_samples < 1 or max_group_delay_s < 0:
            raise ValueError(
                "max_queue_samples and max_group_samples must be positive "
                "and max_group_delay_s not negative"
            )
        if shards < 1:
            raise ValueError(f"shards must be at least 1, not {shards}")
        self._store = store
        self._max_queue_samples = max_queue_samples
        self._max_group_samples = max_group_samples
        self._max_group_delay_s = max_group_delay_s
        self._clock = clock
        self._retry = retry or RetryPolicy()
        self._retry_after_bounds_s = retry_after_bounds_s
        # Called on the writer thread with the batches a group newly stored
        # (duplicates excluded); it must hand them over without blocking.
        self._on_committed = on_committed
        self._cond = threading.Condition()
        # One queue and thread per shard; an agent always lands in the same
        # shard, so concurrent transactions never touch one agent's rows.
        self._queues: list[deque[_Pending]] = [deque() for _ in range(shards)]
        self._shard_samples = [0] * shards
        self._queued_samples = 0
        self._accepting = False
        # Set when a shutdown ran out of time: cuts a retry backoff short.
        self._abort = threading.Event()
        self._threads: list[threading.Thread] = []
        self._groups_committed = 0
        self._batches_committed = 0
        self._samples_written = 0
        self._groups_failed = 0
        self._refused = 0
        self._last_group_batches = 0
        self._last_group_latency_s = 0.0
        # Observed write speed, for the retry delay suggested to refused agents.
        self._samples_per_s: float | None = None
        self.timings = WriterTimings()

    def start(self) -> None:
        with self._cond:
            if self._threads:
                raise RuntimeError("BatchWriter.start() called twice")
            self._accepting = True
            self._threads = [
                threading.Thread(
                    target=self._run,
                    args=(shard,),
                    name=f"dealerpulse-batch-writer-{shard}",
                    daemon=True,
                )
                for shard in range(len(self._queues))
            ]
            for thread in self._threads:
                thread.start()

    async def submit(self, batch: MetricBatch) -> WriteResult:
        """The store's result for the batch, once its transaction has committed.

        Raises Overloaded at once when the queue is full, StoreUnavailable when
        the store kept failing, WriterClosed after shutdown began.
        """
        loop = asyncio.get_running_loop()
        pending = _Pending(
            batch, batch_weight(batch), loop, loop.create_future(), self._clock.monotonic()
        )
        with self._cond:
            if not self._accepting:
                raise WriterClosed("collector is shutting down")
            # A batch larger than the whole queue still goes in when the queue is empty.
            full = self._queued_samples + pending.weight > self._max_queue_samples
            if full and self._queued_samples:
                self._refused += 1
                raise Overloaded(self._retry_after_s(), self._queued_samples)
            shard = self._shard_of(batch.agent_id)
            self._queues[shard].append(pending)
            self._shard_samples[shard] += pending.weight
            self._queued_samples += pending.weight
            self._cond.notify_all()
        return await pending.future

    async def drain_and_stop(self, timeout_s: float) -> bool:
        """Stop accepting, commit what is queued, stop the thread.

        True when everything queued was committed (or failed by the store)
        within timeout_s; otherwise what is still queued fails with WriterClosed.
        """
        with self._cond:
            self._accepting = False
            self._cond.notify_all()
            threads = list(self._threads)
        if not threads:
            return True
        await asyncio.to_thread(_join_all, threads, max(0.0, timeout_s))
        if not any(thread.is_alive() for thread in threads):
            return True
        self._abort.set()
        with self._cond:
            abandoned = [pending for queue in self._queues for pending in queue]
            for queue in self._queues:
                queue.clear()
            self._shard_samples = [0] * len(self._queues)
            self._queued_samples = 0
        logger.warning(
            "writer did not drain within %.1f s; %s queued batches not written",
            timeout_s,
            len(abandoned),
        )
        self._settle_failed(abandoned, WriterClosed("collector shut down before the commit"))
        return False

    def stats(self) -> WriterStats:
        with self._cond:
            return WriterStats(
                queued_batches=sum(map(len, self._queues)),
                queued_samples=self._queued_samples,
                groups_committed=self._groups_committed,
                batches_committed=self._batches_committed,
                samples_written=self._samples_written,
                groups_failed=self._groups_failed,
                submissions_refused=self._refused,
                last_group_batches=self._last_group_batches,
                last_group_latency_s=self._last_group_latency_s,
            )

    # ---- the writer thread

    def _shard_of(self, agent_id: str) -> int:
        if len(self._queues) == 1:
            return 0
        return zlib.crc32(agent_id.encode()) % len(self._queues)

    def _run(self, shard: int) -> None:
        logger.debug("batch writer %s started", shard)
        while (group := self._next_group(shard)) is not None:
            self._commit(group)
        logger.debug("batch writer %s stopped", shard)

    def _next_group(self, shard: int) -> list[_Pending] | None:
        """Block until the shard has work; None once stopped and empty."""
        queue = self._queues[shard]
        with self._cond:
            self._cond.wait_for(lambda: bool(queue) or not self._accepting)
            if not queue:
                return None
            # A shallow queue waits a moment for company: one transaction for
            # many batches costs about what one costs for one. Condition waits
            # run on real time, so this is not the injected clock.
            self._cond.wait_for(
                lambda: (
                    not self._accepting or self._shard_samples[shard] >= self._max_group_samples
                ),
                timeout=self._max_group_delay_s,
            )
            return self._pop_group(shard)

    def _pop_group(self, shard: int) -> list[_Pending]:
        queue = self._queues[shard]
        group: list[_Pending] = []
        total = 0
        while queue:
            weight = queue[0].weight
            if group and total + weight > self._max_group_samples:
                break
            group.append(queue.popleft())
            total += weight
        self._shard_samples[shard] -= total
        self._queued_samples -= total
        return group

    def _commit(self, group: list[_Pending]) -> None:
        batches = [pending.batch for pending in group]
        started = self._clock.monotonic()
        try:
            results = self._write_with_retries(batches)
        except _ContentRefused as refused:
            self._isolate(group, refused.cause)
            return
        except StoreUnavailable as exc:
            with self._cond:
                self._groups_failed += 1
            self._settle_failed(group, exc)
            return
        latency_s = self._clock.monotonic() - started
        self._record_commit(group, results, latency_s)
        self.timings.observe_group([started - pending.queued_at for pending in group], latency_s)
        for pending, result in zip(group, results, strict=True):
            _settle(pending, result)
        self._notify_committed(batches, results)

    def _notify_committed(self, batches: list[MetricBatch], results: list[WriteResult]) -> None:
        if self._on_committed is None:
            return
        stored = [
            batch
            for batch, result in zip(batches, results, strict=True)
            if result.outcome is WriteOutcome.STORED
        ]
        if not stored:
            return
        try:
            self._on_committed(stored)
        except Exception:
            # A bug in a listener must not kill the only writer thread.
            logger.exception("the on_committed callback raised")

    def _isolate(self, group: list[_Pending], cause: StoreError) -> None:
        """Split a refused group until the refused batch is alone; write the rest."""
        if len(group) > 1:
            logger.warning(
                "the store refused a group of %s batches (%s); writing it in halves",
                len(group),
                cause,
            )
            middle = len(group) // 2
            self._commit(group[:middle])
            self._commit(group[middle:])
            return
        with self._cond:
            self._groups_failed += 1
        _settle(group[0], _refusal_of(cause))

    def _write_with_retries(self, batches: Sequence[MetricBatch]) -> list[WriteResult]:
        for attempt in range(1, self._retry.attempts + 1):
            try:
                results = self._store.write_batches(batches, self._clock.now())
            except (AgentConflict, UnknownDealer, StoreWriteError) as exc:
                # The same content would fail again: no point in waiting.
                raise _ContentRefused(exc) from exc
            except StoreError as exc:
                if attempt == self._retry.attempts or self._abort.is_set():
                    raise StoreUnavailable(f"store unavailable: {exc}") from exc
                delay_s = self._retry.delay_s(attempt)
                logger.warning(
                    "writing %s batches failed (attempt %s of %s), retrying in %.2f s: %s",
                    len(batches),
                    attempt,
                    self._retry.attempts,
                    delay_s,
                    exc,
                )
                self._abort.wait(delay_s)
                continue
            except Exception as exc:
                # A bug in the store must not kill the only writer thread.
                logger.exception("store.write_batches raised an unexpected error")
                raise StoreUnavailable(f"store failed: {exc}") from exc
            if len(results) != len(batches):
                raise StoreUnavailable(
                    f"store returned {len(results)} results for {len(batches)} batches"
                )
            return results
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _record_commit(
        self, group: list[_Pending], results: list[WriteResult], latency_s: float
    ) -> None:
        samples = sum(result.samples_stored for result in results)
        weight = sum(pending.weight for pending in group)
        with self._cond:
            self._groups_committed += 1
            self._batches_committed += len(group)
            self._samples_written += samples
            self._last_group_batches = len(group)
            self._last_group_latency_s = latency_s
            if latency_s > 0:
                # The shards write side by side: together about this many times faster.
                speed = weight / latency_s * len(self._queues)
                previous = self._samples_per_s
                self._samples_per_s = speed if previous is None else 0.8 * previous + 0.2 * speed

    def _retry_after_s(self) -> float:
        """How long until the queue has room, judged by the observed write speed."""
        low, high = self._retry_after_bounds_s
        speed = self._samples_per_s
        if not speed or not math.isfinite(speed):
            return low
        return min(high, max(low, self._queued_samples / speed))

    def _settle_failed(self, group: list[_Pending], error: StoreUnavailable) -> None:
        for pending in group:
            # One exception object per future: awaiting it attaches a traceback.
            own_error = type(error)(str(error))
            own_error.__cause__ = error.__cause__
            _settle(pending, own_error)


class _ContentRefused(Exception):
    """The store refused what the group holds, not how it was asked: retrying will not help."""

    def __init__(self, cause: StoreError) -> None:
        super().__init__(str(cause))
        self.cause = cause


def _refusal_of(cause: StoreError) -> Exception:
    """What one refused batch's submitter learns."""
    if isinstance(cause, AgentConflict):
        return BatchRefused(
            Rejection(grpc.StatusCode.PERMISSION_DENIED, "agent_id", f"agent_id: {cause}")
        )
    if isinstance(cause, UnknownDealer):
        return BatchRefused(
            Rejection(grpc.StatusCode.INVALID_ARGUMENT, "dealer_id", f"dealer_id: {cause}")
        )
    # A row the database refuses although validation passed it is a collector
    # bug or a schema problem, not the agent's fault: keep the batch (retry).
    logger.error("the store refused a batch that passed validation: %s", cause)
    error = StoreUnavailable(f"the store refused the batch: {cause}")
    error.__cause__ = cause
    return error


def _join_all(threads: Sequence[threading.Thread], timeout_s: float) -> None:
    """Join every thread, all within one timeout (real time, as thread joins wait)."""
    deadline = time.monotonic() + timeout_s
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))


def _settle(pending: _Pending, outcome: WriteResult | Exception) -> None:
    """Hand the outcome to the submitter's event loop (futures are not thread-safe)."""

    def resolve() -> None:
        if pending.future.done():  # the submitter went away (stream cancelled)
            return
        if isinstance(outcome, Exception):
            pending.future.set_exception(outcome)
        else:
            pending.future.set_result(outcome)

    try:
        pending.loop.call_soon_threadsafe(resolve)
    except RuntimeError:
        # The loop is closed: nobody is waiting for this result any more.
        logger.debug("event loop closed before batch %s was settled", pending.batch.seq)
