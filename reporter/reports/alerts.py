"""The alerts of a report's period, read from ``system_alerts`` (one row per episode).

Counted are the episodes that started in the period (``started_at``, or
``created_at`` for seed-style rows without it). Time to acknowledge and to
resolve are measured from the start, over the episodes that were
acknowledged / resolved by the time the report is made.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, func, select

from collector.store.engine import translated_errors
from collector.store.schema import alert_rules, system_alerts
from reporter.model import TimeRange

NOISIEST_RULES = 5


@dataclass(frozen=True, slots=True)
class AlertEpisode:
    rule: str  # the rule's name, or the seed's alert type without a rule
    severity: str
    started_at: datetime
    acknowledged_at: datetime | None
    resolved_at: datetime | None


@dataclass(frozen=True, slots=True)
class DurationStats:
    """Seconds from an episode's start; None without any measured episode."""

    count: int
    median_s: float | None
    mean_s: float | None


@dataclass(frozen=True, slots=True)
class RuleCount:
    rule: str
    episodes: int


@dataclass(frozen=True, slots=True)
class AlertDigest:
    total: int
    by_severity: tuple[tuple[str, int], ...]  # ("critical", 3), most first
    unresolved: int
    to_acknowledge: DurationStats
    to_resolve: DurationStats
    noisiest: tuple[RuleCount, ...]


def digest(episodes: Iterable[AlertEpisode], noisiest: int = NOISIEST_RULES) -> AlertDigest:
    """The figures of a period from its episodes (pure)."""
    rows = list(episodes)
    severities = Counter(row.severity for row in rows)
    rules = Counter(row.rule for row in rows)
    # Most episodes first; ties by name so that the report is stable.
    ranked = sorted(rules.items(), key=lambda item: (-item[1], item[0]))[:noisiest]
    return AlertDigest(
        total=len(rows),
        by_severity=tuple(sorted(severities.items(), key=lambda item: (-item[1], item[0]))),
        unresolved=sum(1 for row in rows if row.resolved_at is None),
        to_acknowledge=_durations(
            [
                (row.acknowledged_at - row.started_at).total_seconds()
                for row in rows
                if row.acknowledged_at
            ]
        ),
        to_resolve=_durations(
            [(row.resolved_at - row.started_at).total_seconds() for row in rows if row.resolved_at]
        ),
        noisiest=tuple(RuleCount(rule, count) for rule, count in ranked),
    )


def _durations(seconds: Sequence[float]) -> DurationStats:
    values = [max(0.0, value) for value in seconds]  # a clock step must not give negatives
    if not values:
        return DurationStats(0, None, None)
    return DurationStats(len(values), statistics.median(values), statistics.fmean(values))


def read_episodes(
    engine: Engine, dealer_id: str | None, time_range: TimeRange
) -> list[AlertEpisode]:
    """Episodes of ``dealer_id`` (None: every dealer) that started in ``time_range``."""
    started = func.coalesce(system_alerts.c.started_at, system_alerts.c.created_at)
    query = (
        select(
            func.coalesce(alert_rules.c.name, system_alerts.c.type).label("rule"),
            system_alerts.c.severity,
            system_alerts.c.started_at,
            system_alerts.c.created_at,
            system_alerts.c.acknowledged_at,
            system_alerts.c.resolved_at,
        )
        .select_from(
            system_alerts.outerjoin(alert_rules, alert_rules.c.id == system_alerts.c.rule_id)
        )
        .where(started >= time_range.start, started < time_range.end)
        .order_by(system_alerts.c.id)
    )
    if dealer_id is not None:
        query = query.where(system_alerts.c.dealer_id == dealer_id)
    with translated_errors("reading the alerts of a report"), engine.connect() as connection:
        rows = connection.execute(query).all()
    return [
        AlertEpisode(
            rule=str(row.rule),
            severity=str(row.severity),
            started_at=row.started_at or row.created_at,
            acknowledged_at=row.acknowledged_at,
            resolved_at=row.resolved_at,
        )
        for row in rows
    ]


def read_digest(engine: Engine, dealer_id: str | None, time_range: TimeRange) -> AlertDigest:
    return digest(read_episodes(engine, dealer_id, time_range))
