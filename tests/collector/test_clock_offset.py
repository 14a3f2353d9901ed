"""The clock-offset tracker: what one stream asks the store to record, and when."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from collector.ingest.clock_offset import ClockOffsetTracker
from dealerpulse.clock import FakeClock

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


class RecordingStore:
    """Only what the tracker calls; every call kept."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, bool]] = []

    def record_clock_offset(
        self, dealer_id: str, agent_id: str, offset_ms: int, *, if_unknown: bool = False
    ) -> None:
        assert (dealer_id, agent_id) == ("d", "a")
        self.calls.append((offset_ms, if_unknown))


async def _observe(tracker: ClockOffsetTracker, clock: FakeClock, offsets: list[int]) -> None:
    for offset_ms in offsets:
        tracker.observe("d", "a", 1_000_000 + offset_ms, 1_000_000)
        clock.advance(5)
    # The writes the tracker started (it never blocks the stream on them).
    await asyncio.gather(*(asyncio.all_tasks() - {asyncio.current_task()}))


def test_a_stream_records_its_first_batch_only_if_unknown_then_the_best_of_each_window() -> None:
    store = RecordingStore()
    clock = FakeClock(NOW)
    tracker = ClockOffsetTracker(store, clock, window_s=30)  # type: ignore[arg-type]
    # A reconnect: a replayed batch 4 s late, then live ones with delivery
    # jitter; the window keeps the least delayed (the largest) estimate.
    asyncio.run(_observe(tracker, clock, [-4_000, -120, -40, -300, -60, -90, -80, -70]))
    assert store.calls == [(-4_000, True), (-40, False)]
