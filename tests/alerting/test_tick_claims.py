"""Tick slots claimed in the database: one evaluation per slot across collectors.

Real SQLite and PostgreSQL, time from a FakeClock. "Collectors" here are
separate AlertEngines (and AlertJobs) on one database, as separate processes
would be; tests/e2e/test_scale_out.py does it with real processes.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select, text

from collector.alerting.engine import _TICK_LOCK_KEY, AlertEngine
from collector.alerting.jobs import AlertJobs, JobSettings, slot_aligned_start
from collector.alerting.repository import insert_rule
from collector.alerting.rules import Aggregation, Comparator, Condition, Rule, Thresholds
from collector.alerting.ticks import SlotClaims, claim_slot, slot_start_ms
from collector.store import SQLAlchemyMetricStore, open_store
from collector.store.schema import alert_states, alert_ticks, notification_outbox, system_alerts
from dealerpulse.clock import FakeClock, to_unix_ms

from .factories import NOW, add_dealer, batch, sample

INTERVAL_S = 15.0
HOT_RULE = Rule(
    name="cpu hot",
    condition=Condition(
        "cpu.percent", Aggregation.AVG, 60, Comparator.GT, Thresholds(warning=80, critical=95)
    ),
    channels=("slack",),
    alert_type="cpu",
)


def _rows(store: SQLAlchemyMetricStore, table: Any) -> list[Any]:
    with store.engine.connect() as connection:
        return list(connection.execute(select(table).order_by(*table.primary_key.columns)))


def _hot_dealer(store: SQLAlchemyMetricStore, clock: FakeClock) -> None:
    """A dealer whose agent runs hot, and the rule that fires on it at the first tick."""
    add_dealer(store)
    with store.engine.begin() as connection:
        insert_rule(connection, HOT_RULE, NOW)
    point = sample("cpu.percent", 99.0, to_unix_ms(clock.now()))
    store.write_batches([batch("agent-1", 1, samples=(point,))], clock.now())


def _claims(owner: str) -> SlotClaims:
    return SlotClaims(INTERVAL_S, owner)


def test_a_slot_is_evaluated_by_the_first_collector_and_skipped_by_the_others(
    store: SQLAlchemyMetricStore,
) -> None:
    clock = FakeClock(NOW)
    _hot_dealer(store, clock)
    first, second = AlertEngine(store.engine, clock), AlertEngine(store.engine, clock)

    evaluated = first.tick(_claims("collector-a"))
    skipped = second.tick(_claims("collector-b"))

    slot = to_unix_ms(NOW)  # NOW is on a 15 s boundary
    assert (evaluated.skipped, evaluated.rules, evaluated.opened, evaluated.slot_ms) == (
        False,
        1,
        1,
        slot,
    )
    assert (skipped.skipped, skipped.rules, skipped.notifications) == (True, 0, 0)
    [row] = _rows(store, alert_ticks)
    assert (row.slot_ms, row.claimed_by, row.rules) == (slot, "collector-a", 1)
    assert row.finished_at == NOW

    clock.advance(INTERVAL_S)
    assert not second.tick(_claims("collector-b")).skipped
    assert [(r.slot_ms, r.claimed_by) for r in _rows(store, alert_ticks)] == [
        (slot, "collector-a"),
        (slot + 15_000, "collector-b"),
    ]
    assert len(_rows(store, notification_outbox)) == 1


def test_a_tick_without_claims_evaluates_even_in_a_claimed_slot(
    store: SQLAlchemyMetricStore,
) -> None:
    clock = FakeClock(NOW)
    _hot_dealer(store, clock)
    engine = AlertEngine(store.engine, clock)
    engine.tick(_claims("collector-a"))
    report = engine.tick()
    assert (report.skipped, report.rules, report.slot_ms) == (False, 1, None)
    assert len(_rows(store, alert_ticks)) == 1


class DyingClock(FakeClock):
    """A FakeClock that raises at its n-th reading: a collector failing mid-tick."""

    def __init__(self, start: datetime, fail_at: int) -> None:
        super().__init__(start)
        self.readings, self.fail_at = 0, fail_at

    def now(self) -> datetime:
        self.readings += 1
        if self.readings == self.fail_at:
            raise RuntimeError("collector died mid-tick")
        return super().now()


def test_a_collector_failing_mid_tick_leaves_its_slot_to_the_next(
    store: SQLAlchemyMetricStore,
) -> None:
    clock = FakeClock(NOW)
    _hot_dealer(store, clock)
    dying = DyingClock(NOW, fail_at=0)
    doomed = AlertEngine(store.engine, dying)
    # The next reading is the slot's; the one after, when the evaluation is done.
    dying.fail_at = dying.readings + 2
    with pytest.raises(RuntimeError, match="mid-tick"):
        doomed.tick(_claims("collector-a"))
    # Rolled back together: no claim, no state, no episode, no notification.
    for table in (alert_ticks, alert_states, system_alerts, notification_outbox):
        assert _rows(store, table) == [], table.name

    report = AlertEngine(store.engine, clock).tick(_claims("collector-b"))
    assert (report.skipped, report.opened) == (False, 1)
    [row] = _rows(store, alert_ticks)
    assert row.claimed_by == "collector-b"
    assert len(_rows(store, notification_outbox)) == 1


def _wait_for(condition: Callable[[], bool], what: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)  # polling a condition, not synchronising


def _waiting_for_the_tick_lock(store: SQLAlchemyMetricStore) -> bool:
    query = text(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
        " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    )
    with store.engine.connect() as connection:
        return bool(connection.scalar(query))


def test_a_collector_dying_with_the_lock_hands_its_slot_to_the_one_waiting(pg_url: str) -> None:
    """PostgreSQL: the claimant's connection drops mid-tick; the waiting tick evaluates the slot."""
    store = open_store(pg_url)
    clock = FakeClock(NOW)
    try:
        _hot_dealer(store, clock)
        dying = store.engine.connect()
        transaction = dying.begin()
        dying.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _TICK_LOCK_KEY})
        assert claim_slot(dying, to_unix_ms(NOW), "collector-a", NOW)
        reports: list[Any] = []
        waiting = threading.Thread(
            target=lambda: reports.append(
                AlertEngine(store.engine, clock).tick(_claims("collector-b"))
            )
        )
        waiting.start()
        _wait_for(lambda: _waiting_for_the_tick_lock(store), "the second tick to wait for the lock")
        # The collector dies: its connection goes away without a commit.
        dying.invalidate()
        transaction.rollback()
        dying.close()
        waiting.join(timeout=30)
        assert not waiting.is_alive()
        [report] = reports
        assert (report.skipped, report.opened) == (False, 1)
        [row] = _rows(store, alert_ticks)
        assert (row.slot_ms, row.claimed_by) == (to_unix_ms(NOW), "collector-b")
    finally:
        store.close()


def test_collectors_ticking_at_once_evaluate_each_slot_once(
    store: SQLAlchemyMetricStore,
) -> None:
    clock = FakeClock(NOW)
    _hot_dealer(store, clock)
    engines = [AlertEngine(store.engine, clock) for _ in range(3)]
    reports: list[Any] = []
    lock = threading.Lock()

    def tick(index: int) -> None:
        try:
            outcome: Any = engines[index].tick(_claims(f"collector-{index}"))
        except BaseException as error:  # collected and asserted below
            outcome = error
        with lock:
            reports.append(outcome)

    for _ in range(4):
        threads = [threading.Thread(target=tick, args=(i,)) for i in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert not any(thread.is_alive() for thread in threads)
        clock.advance(INTERVAL_S)

    assert not [r for r in reports if isinstance(r, BaseException)], reports
    assert sorted(r.skipped for r in reports) == [False] * 4 + [True] * 8
    slots = [row.slot_ms for row in _rows(store, alert_ticks)]
    assert slots == [to_unix_ms(NOW) + i * 15_000 for i in range(4)]
    assert len(_rows(store, system_alerts)) == 1
    assert len(_rows(store, notification_outbox)) == 1


def test_slots_older_than_the_kept_history_are_pruned(store: SQLAlchemyMetricStore) -> None:
    clock = FakeClock(NOW)
    engine = AlertEngine(store.engine, clock)
    claims = SlotClaims(INTERVAL_S, "collector-a", keep_s=30.0)
    for _ in range(5):
        engine.tick(claims)
        clock.advance(INTERVAL_S)
    slots = [row.slot_ms for row in _rows(store, alert_ticks)]
    newest = to_unix_ms(NOW) + 4 * 15_000
    assert slots == [newest - 30_000, newest - 15_000, newest]


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"interval_s": 0.0, "owner": "a"}, "interval_s"),
        ({"interval_s": math.nan, "owner": "a"}, "interval_s"),
        ({"interval_s": 1.0, "owner": ""}, "owner"),
        ({"interval_s": 1.0, "owner": "x" * 129}, "owner"),
        ({"interval_s": 10.0, "owner": "a", "keep_s": 5.0}, "keep_s"),
    ],
)
def test_bad_claim_settings_are_refused_naming_the_field(
    kwargs: dict[str, Any], named: str
) -> None:
    with pytest.raises(ValueError, match=named):
        SlotClaims(**kwargs)


@given(
    now_ms=st.integers(min_value=0, max_value=4_000_000_000_000),
    interval_ms=st.integers(min_value=1, max_value=86_400_000),
)
def test_a_slot_starts_on_the_interval_grid_at_or_before_now(now_ms: int, interval_ms: int) -> None:
    start = slot_start_ms(now_ms, interval_ms)
    assert start % interval_ms == 0
    assert start <= now_ms < start + interval_ms


@given(
    now_s=st.floats(min_value=1e9, max_value=4e9),
    interval_ms=st.integers(min_value=10, max_value=3_600_000),
)
def test_the_first_tick_fires_just_after_a_slot_boundary_and_never_early(
    now_s: float, interval_ms: int
) -> None:
    interval_s = interval_ms / 1000
    now = datetime.fromtimestamp(now_s, UTC)
    start = slot_aligned_start(now, interval_s)
    # Not sooner than an unaligned first run, at most one interval later.
    assert now + timedelta(seconds=interval_s) <= start + timedelta(microseconds=1)
    assert start < now + timedelta(seconds=2 * interval_s)
    # Inside its slot, a little after the boundary: late runs still land in that slot.
    into_slot_ms = to_unix_ms(start) - slot_start_ms(to_unix_ms(start), interval_ms)
    assert into_slot_ms <= math.ceil(interval_ms * 0.05) + 1
    assert into_slot_ms >= math.floor(interval_ms * 0.05) - 1


def test_the_aligned_start_refuses_naive_times_and_bad_intervals() -> None:
    with pytest.raises(ValueError, match="timezone"):
        slot_aligned_start(datetime(2026, 1, 1), 1.0)  # noqa: DTZ001 - naive on purpose
    with pytest.raises(ValueError, match="interval_s"):
        slot_aligned_start(NOW, 0.0)


async def _wait_until(condition: Callable[[], bool], what: str, timeout_s: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def test_scheduled_jobs_of_two_collectors_share_the_slots(store: SQLAlchemyMetricStore) -> None:
    """The scheduler fires many times a slot; the FakeClock moves one slot at a time."""
    clock = FakeClock(NOW)
    _hot_dealer(store, clock)
    settings = [
        JobSettings(alert_interval_s=0.05, dispatch_interval_s=3600.0, tick_owner=f"c{i}")
        for i in range(2)
    ]
    jobs = [AlertJobs(store.engine, clock, {}, (), one) for one in settings]

    def runs() -> int:
        return min(job.stats().ticks for job in jobs)

    def evaluations() -> int:
        return sum(job.stats().ticks - job.stats().skipped_ticks for job in jobs)

    async def scenario() -> None:
        for job in jobs:
            await job.start()
        try:
            for step in range(3):
                before = runs()
                await _wait_until(lambda b=before: runs() >= b + 3, "ticks of both")  # type: ignore[misc]
                assert evaluations() == step + 1
                clock.advance(0.05)
            await _wait_until(lambda: evaluations() == 4, "the fourth slot")
        finally:
            for job in jobs:
                await job.stop()

    asyncio.run(scenario())
    assert len(_rows(store, alert_ticks)) == 4
    assert len(_rows(store, notification_outbox)) == 1
