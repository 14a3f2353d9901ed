"""Trend verdicts on series: Mann-Kendall for significance, Theil-Sen for size.

A series is "improving"/"degrading" (or "increasing"/"decreasing" for
throughput) only when both hold:

- the Mann-Kendall test (autocorrelation corrected, see stats.py) rejects
  "no trend" at ``alpha``;
- the Theil-Sen line changes by at least ``min_change_percent`` of its level
  over the observed span (and, for error rates, by at least a tenth of the
  error-rate threshold in percentage points): a significant but tiny drift
  is "stable".

Fewer than ``min_points`` measured points give INSUFFICIENT_DATA. Time is
measured in hours from the range start, so gaps in a series do not bend
the slope.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np

from reporter.analysis.stats import Line, MannKendall, mann_kendall, sens_slope
from reporter.analysis.thresholds import AnalysisThresholds
from reporter.model import AnalyticsData, Direction, Point, Series, Trend

METHOD = "mann-kendall+theil-sen (hamed-rao)"


@dataclass(frozen=True, slots=True)
class Measured:
    """A series' measured points as hours since an origin, for the tests."""

    hours: tuple[float, ...]
    values: tuple[float, ...]
    points: tuple[Point, ...]

    @classmethod
    def of(cls, series: Series, origin: datetime) -> Measured:
        points: list[Point] = []
        hours: list[float] = []
        values: list[float] = []
        start_s = origin.timestamp()
        for point in series.points:  # one pass: this runs for every endpoint's series
            if point.value is not None:
                points.append(point)
                hours.append((point.time.timestamp() - start_s) / 3600)
                values.append(float(point.value))
        return cls(tuple(hours), tuple(values), tuple(points))

    def __len__(self) -> int:
        return len(self.values)

    @property
    def span_hours(self) -> float:
        return self.hours[-1] - self.hours[0] if self.hours else 0.0


@dataclass(frozen=True, slots=True)
class Fit:
    """A significant-or-not trend with its line and practical size."""

    test: MannKendall
    line: Line
    change: float  # fitted change over the observed span, in the series' unit
    change_percent: float | None  # relative to the fitted start (or the mean level)
    significant: bool  # p < alpha and slope != 0
    practical: bool  # change big enough to matter


def fit(
    measured: Measured,
    thresholds: AnalysisThresholds,
    *,
    min_change: float = 0.0,
    significant_only: bool = False,
) -> Fit | None:
    """Test and size the trend; None when there are too few points.

    ``significant_only`` also gives None for a trend that is not significant,
    sparing the rules the O(n^2) Theil-Sen slope of series they would drop.
    """
    if len(measured) < thresholds.min_points:
        return None
    test = mann_kendall(measured.hours, measured.values)
    if significant_only and test.p_value >= thresholds.alpha:
        return None
    line = sens_slope(measured.hours, measured.values)
    change = line.slope * measured.span_hours
    reference = line.at(measured.hours[0])
    if reference <= 0:
        reference = float(np.mean(np.abs(measured.values)))
    change_percent = change / reference * 100 if reference > 0 else None
    significant = test.p_value < thresholds.alpha and line.slope != 0
    practical = (
        change_percent is not None
        and abs(change_percent) >= thresholds.min_change_percent
        and abs(change) >= min_change
    )
    return Fit(test, line, change, change_percent, significant, practical)


def series_trend(
    metric: str,
    series: Series,
    origin: datetime,
    thresholds: AnalysisThresholds,
    *,
    higher_is_worse: bool | None,
    min_change: float = 0.0,
) -> Trend:
    """The verdict on one series; ``higher_is_worse=None`` for neutral metrics (throughput)."""
    measured = Measured.of(series, origin)
    result = fit(measured, thresholds, min_change=min_change)
    if result is None:
        return Trend(metric, Direction.INSUFFICIENT_DATA, METHOD, len(measured), None, None, None)
    return Trend(
        metric=metric,
        direction=_direction(result, higher_is_worse),
        method=METHOD,
        n=len(measured),
        p_value=result.test.p_value,
        slope_per_hour=result.line.slope,
        change_percent=result.change_percent,
    )


def _direction(result: Fit, higher_is_worse: bool | None) -> Direction:
    if not (result.significant and result.practical):
        return Direction.STABLE
    rising = result.line.slope > 0
    if higher_is_worse is None:
        return Direction.INCREASING if rising else Direction.DECREASING
    return Direction.DEGRADING if rising == higher_is_worse else Direction.IMPROVING


def trends(data: AnalyticsData, thresholds: AnalysisThresholds) -> tuple[Trend, ...]:
    """Dealer-wide response time, error rate and throughput, in that order."""
    origin = data.range.start
    return (
        series_trend("response_time", data.response_time, origin, thresholds, higher_is_worse=True),
        series_trend(
            "error_rate",
            data.error_rate,
            origin,
            thresholds,
            higher_is_worse=True,
            min_change=thresholds.error_rate_min_change,
        ),
        series_trend("throughput", data.throughput, origin, thresholds, higher_is_worse=None),
    )
