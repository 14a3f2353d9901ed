"""The pure state machine: examples, then properties over random evaluation sequences."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from collector.alerting.evaluate import (
    AlertState,
    Criteria,
    FlapPolicy,
    NoticeKind,
    Outcome,
    Phase,
    evaluate,
)
from collector.alerting.rules import Comparator, Severity, Thresholds

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
THRESHOLDS = Thresholds(warning=200, critical=500, warning_recovery=180, critical_recovery=450)
NO_FLAP = FlapPolicy(max_changes=10**6)
# Values on and around every level, and no data.
VALUES = st.one_of(
    st.none(), st.sampled_from([0.0, 170, 180, 190, 200, 201, 440, 450, 470, 500, 501, 900])
)


def _criteria(for_s: float = 60, flap: FlapPolicy = NO_FLAP) -> Criteria:
    return Criteria(THRESHOLDS, Comparator.GT, for_s, flap)


@dataclass
class Run:
    """A sequence of evaluations and what each returned."""

    criteria: Criteria
    now: datetime = T0
    state: AlertState = field(default_factory=AlertState)
    steps: list[tuple[datetime, float | None, AlertState, Outcome]] = field(default_factory=list)

    def at(self, seconds: float, value: float | None) -> Outcome:
        self.now += timedelta(seconds=seconds)
        outcome = evaluate(self.state, value, self.criteria, self.now)
        self.steps.append((self.now, value, self.state, outcome))
        self.state = outcome.state
        return outcome

    def kinds(self) -> list[NoticeKind]:
        return [notice.kind for *_, outcome in self.steps for notice in outcome.notices]


def test_fires_after_the_pending_duration_and_resolves_once() -> None:
    run = Run(_criteria(for_s=60))
    assert run.at(0, 250).state.phase is Phase.PENDING
    assert run.at(30, 250).notices == ()
    fired = run.at(30, 250)
    assert fired.opened and [n.kind for n in fired.notices] == [NoticeKind.FIRING]
    assert fired.notices[0].severity is Severity.WARNING and fired.notices[0].threshold == 200
    assert run.at(15, 190).notices == ()  # above the recovery level: still firing
    resolved = run.at(15, 150)
    assert resolved.closed and [n.kind for n in resolved.notices] == [NoticeKind.RESOLVED]
    assert run.state.phase is Phase.OK


def test_one_false_or_missing_evaluation_resets_pending() -> None:
    run = Run(_criteria(for_s=60))
    run.at(0, 250)
    run.at(30, 100)
    run.at(15, 250)
    assert run.at(45, 250).state.phase is Phase.PENDING  # only 45 s since the reset
    run.at(15, None)
    assert run.state.phase is Phase.OK
    assert run.kinds() == []


def test_warning_to_critical_is_one_episode_with_a_severity_change() -> None:
    run = Run(_criteria(for_s=0))
    run.at(0, 250)
    changed = run.at(15, 600)
    assert not changed.opened
    assert [(n.kind, n.severity) for n in changed.notices] == [
        (NoticeKind.SEVERITY_CHANGE, Severity.CRITICAL)
    ]
    run.at(15, 460)  # above the critical recovery: no change
    assert run.at(15, 300).notices[0].severity is Severity.WARNING
    assert run.kinds() == [
        NoticeKind.FIRING,
        NoticeKind.SEVERITY_CHANGE,
        NoticeKind.SEVERITY_CHANGE,
    ]


def test_no_data_neither_fires_nor_resolves() -> None:
    run = Run(_criteria(for_s=0))
    for _ in range(5):
        assert run.at(15, None).state.phase is Phase.OK
    run.at(15, 300)
    for _ in range(5):
        outcome = run.at(15, None)
        assert outcome.state.phase is Phase.FIRING and outcome.notices == ()


def test_flapping_sends_one_notice_and_stays_quiet_until_settled() -> None:
    flap = FlapPolicy(max_changes=3, window_s=600, settle_s=120)
    run = Run(_criteria(for_s=0, flap=flap))
    for _ in range(6):
        run.at(15, 300)
        run.at(15, 100)
    assert Counter(run.kinds()) == {
        NoticeKind.FIRING: 2,
        NoticeKind.RESOLVED: 2,
        NoticeKind.FLAPPING: 1,
    }
    assert run.kinds()[-1] is NoticeKind.FLAPPING
    silent = run.at(15, 300)  # still flapping: the new episode is silent
    assert silent.opened and silent.notices == ()
    settled = run.at(120, 300)
    assert [n.kind for n in settled.notices] == [NoticeKind.FIRING]
    assert [n.kind for n in run.at(15, 100).notices] == [NoticeKind.RESOLVED]


# ---- properties

STEPS = st.lists(st.tuples(st.integers(1, 90), VALUES), min_size=1, max_size=60)


def _breaches(value: float | None) -> bool:
    return value is not None and THRESHOLDS.level(value, Comparator.GT, None) is not None


@settings(max_examples=300, deadline=None)
@given(steps=STEPS, for_s=st.sampled_from([0, 30, 60, 120]))
def test_fires_exactly_when_the_condition_held_for_the_whole_pending_duration(
    steps: list[tuple[int, float | None]], for_s: int
) -> None:
    run = Run(_criteria(for_s=for_s))
    streak_start: datetime | None = None
    for seconds, value in steps:
        was_firing = run.state.phase is Phase.FIRING
        outcome = run.at(seconds, value)
        if was_firing:
            streak_start = None
            continue
        streak_start = (streak_start or run.now) if _breaches(value) else None
        held_long_enough = (
            streak_start is not None and (run.now - streak_start).total_seconds() >= for_s
        )
        assert outcome.opened == held_long_enough, (streak_start, run.now)


@settings(max_examples=300, deadline=None)
@given(steps=STEPS)
def test_a_firing_alert_resolves_only_past_its_recovery_level(
    steps: list[tuple[int, float | None]],
) -> None:
    run = Run(_criteria(for_s=0))
    for seconds, value in steps:
        was_firing = run.state.phase is Phase.FIRING
        outcome = run.at(seconds, value)
        if was_firing and value is not None:
            # The lowest recovery level (warning's) decides whether the episode ends.
            assert outcome.closed == (value <= 180)


@settings(max_examples=300, deadline=None)
@given(
    steps=STEPS,
    for_s=st.sampled_from([0, 30]),
    max_changes=st.sampled_from([2, 4, 10**6]),
)
def test_exactly_one_firing_and_one_resolved_per_notified_episode(
    steps: list[tuple[int, float | None]], for_s: int, max_changes: int
) -> None:
    flap = FlapPolicy(max_changes=max_changes, window_s=300, settle_s=120)
    run = Run(_criteria(for_s=for_s, flap=flap))
    per_episode: list[Counter[NoticeKind]] = []
    closed: list[bool] = []
    flapping_starts = 0
    for seconds, value in steps:
        was_flapping = run.state.flapping
        outcome = run.at(seconds, value)
        flapping_starts += outcome.state.flapping and not was_flapping
        if outcome.opened:
            per_episode.append(Counter())
            closed.append(False)
        if per_episode:
            per_episode[-1].update(notice.kind for notice in outcome.notices)
        if outcome.closed:
            closed[-1] = True
    for counts, ended in zip(per_episode, closed, strict=True):
        assert counts[NoticeKind.FIRING] <= 1
        assert counts[NoticeKind.RESOLVED] == (1 if ended and counts[NoticeKind.FIRING] else 0)
        if counts[NoticeKind.SEVERITY_CHANGE]:
            assert counts[NoticeKind.FIRING] == 1
        if max_changes == 10**6:
            assert counts[NoticeKind.FIRING] == 1
    assert Counter(run.kinds())[NoticeKind.FLAPPING] <= flapping_starts
