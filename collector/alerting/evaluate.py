"""The alert state machine, pure: no I/O, no clock; time comes in as ``now``.

One (rule, dealer, agent, labels) moves ok -> pending -> firing -> ok. An
episode is the time between firing and the return to ok: the engine opens a
system_alerts row when :attr:`Outcome.opened` and closes it when
:attr:`Outcome.closed`. Warning and critical are one episode whose severity
changes.

- Pending needs the condition at every evaluation: one false or missing
  evaluation returns to ok, and firing happens once it held for ``for_s``.
- No data never fires a threshold rule and never resolves one (the agent
  silence rule reports a silent agent; a resolve would be a guess).
- Flapping: more than ``max_changes`` firing/resolved transitions within
  ``window_s`` send one "flapping" notice; episodes opened while flapping are
  silent (neither firing nor resolved is sent), until ``settle_s`` pass without
  a transition. An alert still firing then is notified once. An episode whose
  firing was sent always gets its resolved.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum

from collector.alerting.rules import Comparator, Severity, Thresholds


class Phase(StrEnum):
    OK = "ok"
    PENDING = "pending"
    FIRING = "firing"


class NoticeKind(StrEnum):
    FIRING = "firing"
    RESOLVED = "resolved"
    SEVERITY_CHANGE = "severity_change"
    FLAPPING = "flapping"
    # Written by later parts (repeat and escalation jobs), named here for the outbox.
    ESCALATION = "escalation"
    REPEAT = "repeat"


@dataclass(frozen=True, slots=True)
class FlapPolicy:
    max_changes: int = 6
    window_s: float = 3600.0
    settle_s: float = 900.0


@dataclass(frozen=True, slots=True)
class AlertState:
    phase: Phase = Phase.OK
    # Pending: the severity seen last; firing: the episode's current severity.
    severity: Severity | None = None
    pending_since: datetime | None = None
    # Whether the open episode's firing was notified.
    notified: bool = False
    # Times of recent firing/resolved transitions, oldest first.
    changes: tuple[datetime, ...] = ()
    flapping: bool = False


@dataclass(frozen=True, slots=True)
class Notice:
    kind: NoticeKind
    severity: Severity | None
    value: float | None
    threshold: float | None
    at: datetime


@dataclass(frozen=True, slots=True)
class Outcome:
    state: AlertState
    notices: tuple[Notice, ...] = ()
    # The evaluation started an episode / ended the open one.
    opened: bool = False
    closed: bool = False


@dataclass(frozen=True, slots=True)
class Criteria:
    """What the state machine needs of a rule."""

    thresholds: Thresholds
    comparator: Comparator
    for_s: float
    flap: FlapPolicy = FlapPolicy()


def evaluate(
    previous: AlertState, value: float | None, criteria: Criteria, now: datetime
) -> Outcome:
    """The next state after observing ``value`` (None: no data) at ``now``."""
    state = _forget_old_changes(_settle_flapping(previous, criteria.flap, now), criteria.flap, now)
    settled = previous.flapping and not state.flapping
    if value is None:
        outcome = _no_data(state)
    else:
        held = state.severity if state.phase is Phase.FIRING else None
        target = criteria.thresholds.level(value, criteria.comparator, held)
        outcome = _step(state, target, value, criteria, now)
    if settled and outcome.state.phase is Phase.FIRING and not outcome.state.notified:
        outcome = _late_firing(outcome, value, criteria.thresholds, now)
    return outcome


def _no_data(state: AlertState) -> Outcome:
    if state.phase is Phase.PENDING:
        return Outcome(replace(state, phase=Phase.OK, severity=None, pending_since=None))
    return Outcome(state)


def _step(
    state: AlertState, target: Severity | None, value: float, criteria: Criteria, now: datetime
) -> Outcome:
    if target is None:
        if state.phase is Phase.FIRING:
            return _resolve(state, value, criteria, now)
        return Outcome(replace(state, phase=Phase.OK, severity=None, pending_since=None))
    if state.phase is Phase.FIRING:
        if target is state.severity:
            return Outcome(state)
        changed = replace(state, severity=target)
        if not state.notified:
            return Outcome(changed)
        return Outcome(
            changed, (_notice(NoticeKind.SEVERITY_CHANGE, target, value, criteria, now),)
        )
    pending = state.phase is Phase.PENDING and state.pending_since is not None
    since = state.pending_since if pending and state.pending_since is not None else now
    if (now - since).total_seconds() >= criteria.for_s:
        return _fire(state, target, value, criteria, now)
    return Outcome(replace(state, phase=Phase.PENDING, severity=target, pending_since=since))


def _fire(
    state: AlertState, severity: Severity, value: float, criteria: Criteria, now: datetime
) -> Outcome:
    changes, flapping, flap_notice = _record_change(state, criteria, value, severity, now)
    silent = flapping
    fired = AlertState(
        phase=Phase.FIRING,
        severity=severity,
        notified=not silent,
        changes=changes,
        flapping=flapping,
    )
    notices = list(flap_notice)
    if not silent:
        notices.append(_notice(NoticeKind.FIRING, severity, value, criteria, now))
    return Outcome(fired, tuple(notices), opened=True)


def _resolve(state: AlertState, value: float, criteria: Criteria, now: datetime) -> Outcome:
    changes, flapping, flap_notice = _record_change(state, criteria, value, state.severity, now)
    notices: list[Notice] = []
    if state.notified:
        notices.append(_notice(NoticeKind.RESOLVED, state.severity, value, criteria, now))
    notices.extend(flap_notice)
    resolved = AlertState(changes=changes, flapping=flapping)
    return Outcome(resolved, tuple(notices), closed=True)


def _record_change(
    state: AlertState,
    criteria: Criteria,
    value: float,
    severity: Severity | None,
    now: datetime,
) -> tuple[tuple[datetime, ...], bool, tuple[Notice, ...]]:
    """The transition history with ``now``, whether flapping, and the one flapping notice."""
    horizon = now - timedelta(seconds=criteria.flap.window_s)
    changes = (*(moment for moment in state.changes if moment > horizon), now)
    if state.flapping or len(changes) <= criteria.flap.max_changes:
        return changes, state.flapping, ()
    return changes, True, (_notice(NoticeKind.FLAPPING, severity, value, criteria, now),)


def _forget_old_changes(state: AlertState, flap: FlapPolicy, now: datetime) -> AlertState:
    """Drop transitions older than the flap window: a quiet state returns to the default."""
    horizon = now - timedelta(seconds=flap.window_s)
    if not state.changes or state.changes[0] > horizon:
        return state
    return replace(state, changes=tuple(moment for moment in state.changes if moment > horizon))


def _settle_flapping(state: AlertState, flap: FlapPolicy, now: datetime) -> AlertState:
    if not state.flapping or not state.changes:
        return state
    quiet_s = (now - state.changes[-1]).total_seconds()
    # Settling starts the count afresh, or the next transition would flap again at once.
    return replace(state, flapping=False, changes=()) if quiet_s >= flap.settle_s else state


def _late_firing(
    outcome: Outcome, value: float | None, thresholds: Thresholds, now: datetime
) -> Outcome:
    severity = outcome.state.severity
    threshold = None if severity is None else thresholds.trigger_of(severity)
    late = Notice(NoticeKind.FIRING, severity, value, threshold, now)
    return replace(
        outcome, state=replace(outcome.state, notified=True), notices=(*outcome.notices, late)
    )


def _notice(
    kind: NoticeKind,
    severity: Severity | None,
    value: float,
    criteria: Criteria,
    now: datetime,
) -> Notice:
    threshold = None if severity is None else criteria.thresholds.trigger_of(severity)
    return Notice(kind, severity, value, threshold, now)
