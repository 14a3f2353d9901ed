"""The agent's clock offset, estimated from the batches it sends.

Each batch carries the agent's clock reading when it was built
(``created_unix_ms``); the collector compares it with its own clock when the
batch arrives. ``created - received`` is the offset minus the delivery delay,
so the largest value over a window is the best estimate (the least delayed
batch, as in NTP's clock filter): backlogged batches replayed after an outage
read far behind and are outweighed by the live ones. The first batch of a
stream is recorded at once for an agent that has no offset yet, so a new agent
whose batches are all refused for their timestamps shows its offset at once;
later estimates at most once a window (the store keeps a recorded offset that
moved less than its resolution, see collector/store/agent_updates.py).
"""

from __future__ import annotations

import asyncio
import logging

from collector.abc import MetricStore, StoreError
from dealerpulse.clock import Clock

logger = logging.getLogger(__name__)

WINDOW_S = 30.0


class ClockOffsetTracker:
    """One stream's estimate; writes it to the agent's row (never blocks the stream)."""

    def __init__(self, store: MetricStore, clock: Clock, window_s: float = WINDOW_S) -> None:
        self._store = store
        self._clock = clock
        self._window_s = window_s
        self._best_ms: int | None = None
        self._next_write = float("-inf")
        self._writes: set[asyncio.Task[None]] = set()

    def observe(self, dealer_id: str, agent_id: str, created_ms: int, received_ms: int) -> None:
        offset_ms = created_ms - received_ms
        if self._best_ms is None or offset_ms > self._best_ms:
            self._best_ms = offset_ms
        now = self._clock.monotonic()
        if now < self._next_write or not agent_id:
            return
        first = self._next_write == float("-inf")
        self._next_write = now + self._window_s
        best, self._best_ms = self._best_ms, None
        task = asyncio.create_task(self._write(dealer_id, agent_id, best, if_unknown=first))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _write(
        self, dealer_id: str, agent_id: str, offset_ms: int, *, if_unknown: bool
    ) -> None:
        record = self._store.record_clock_offset
        try:
            await asyncio.to_thread(record, dealer_id, agent_id, offset_ms, if_unknown=if_unknown)
        except StoreError as exc:  # best effort: the next window writes again
            logger.debug("clock offset of agent %r not recorded: %s", agent_id, exc)
