"""Capacity planning: traffic by hour of day (UTC), and how uneven it is.

Each hour's typical traffic is the median of its buckets over the days, so
a one-off burst does not make an hour busy; the peak hour is compared with
the mean of the 24 typical hours. Needs at least ``uneven_min_hours`` of
throughput at a step of an hour or less, with every hour of the day
measured. Hours are UTC: the dealer's time zone is not in the data, so the
text says UTC.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta
from statistics import fmean, median

from reporter.analysis import text
from reporter.analysis.rules.base import Finding
from reporter.analysis.thresholds import AnalysisThresholds
from reporter.model import AnalyticsData, Effort, Impact

_HOUR = timedelta(hours=1)
# Peak/mean ratios from this one up are a medium-impact imbalance.
_MEDIUM_RATIO = 3.0


def typical_by_hour(data: AnalyticsData, limits: AnalysisThresholds) -> list[float] | None:
    """Typical requests/min for each hour of the day, or None without a full day of data.

    The median of the hour's buckets over all days: one burst is not a pattern.
    """
    series = data.throughput
    points = [p for p in series.points if p.value is not None]
    if series.step > _HOUR or not points:
        return None
    covered = (points[-1].time - points[0].time + series.step) / _HOUR
    if covered < limits.uneven_min_hours:
        return None
    by_hour: defaultdict[int, list[float]] = defaultdict(list)
    for point in points:
        if point.value is not None:
            by_hour[point.time.hour].append(point.value)
    if len(by_hour) < 24:
        return None
    return [median(by_hour[hour]) for hour in range(24)]


def uneven_load(data: AnalyticsData, limits: AnalysisThresholds) -> list[Finding]:
    typical = typical_by_hour(data, limits)
    if typical is None:
        return []
    overall = fmean(typical)
    if overall <= 0:
        return []
    peak = max(range(24), key=lambda h: (typical[h], -h))
    quiet = min(range(24), key=lambda h: (typical[h], h))
    ratio = typical[peak] / overall
    if ratio < limits.uneven_min_peak_to_mean:
        return []
    busy = [h for h in range(24) if typical[h] >= (overall + typical[peak]) / 2]
    points = [p for p in data.throughput.points if p.value is not None]
    days = ((points[-1].time - points[0].time + data.throughput.step) / _HOUR) / 24
    return [
        Finding(
            type="uneven_load",
            title=f"Traffic peaks at {text.hour_ranges([peak])} UTC: plan capacity for it",
            description=(
                f"Over {text.number(days)} days, traffic typically peaks at"
                f" {text.number(typical[peak])} requests/min at {text.hour_ranges([peak])} UTC,"
                f" {text.number(ratio)}x the average hour's {text.number(overall)} requests/min"
                f" (quietest: {text.hour_ranges([quiet])} UTC at"
                f" {text.number(typical[quiet])} requests/min). Busy hours:"
                f" {text.hour_ranges(busy)} UTC. Size capacity for the peak, and move batch"
                " jobs, backups and maintenance to the quiet hours."
            ),
            impact=Impact.MEDIUM if ratio >= _MEDIUM_RATIO else Impact.LOW,
            effort=Effort.MEDIUM,
            evidence={
                "peak_hour_utc": text.hour_ranges([peak]),
                "peak_per_min": typical[peak],
                "mean_per_min": overall,
                "peak_to_mean": ratio,
                "quietest_hour_utc": text.hour_ranges([quiet]),
                "quietest_per_min": typical[quiet],
                "busy_hours_utc": text.hour_ranges(busy),
                "days_covered": days,
            },
            urgency=ratio,
        )
    ]
