"""Response-time regressions that began at a point in time (change-point detection).

Each endpoint's average response-time series (and the dealer-wide one) is
segmented by :func:`stats.change_points`. A break counts as a regression
when the segment after it is slower than the one before by at least
``regression_min_change_percent`` and ``regression_min_increase_ms``,
Welch's t-test between the two segments is significant, and the last
segment of the range is still that slow (a regression already fixed is not
worth a recommendation). The significance level is split over the series
tested (Bonferroni), since every endpoint is one more chance of a false
alarm; the t-test ignores autocorrelation, which the size limits offset.
The dealer-wide series is only reported when no endpoint explains it.
"""

from __future__ import annotations

from dataclasses import dataclass

from reporter.analysis import text
from reporter.analysis.rules.base import Finding
from reporter.analysis.rules.endpoints import endpoint_key
from reporter.analysis.stats import ChangePoint, change_points
from reporter.analysis.thresholds import AnalysisThresholds
from reporter.analysis.trend import Measured
from reporter.model import AnalyticsData, Effort, Impact, Series


@dataclass(frozen=True, slots=True)
class _Regression:
    change: ChangePoint
    latest_level: float
    change_percent: float


def _is_step_up(before: float, after: float, limits: AnalysisThresholds) -> bool:
    return after - before >= limits.regression_min_increase_ms and after >= before * (
        1 + limits.regression_min_change_percent / 100
    )


def find_regression(
    values: tuple[float, ...], limits: AnalysisThresholds, alpha: float
) -> _Regression | None:
    """The largest still-present step up in ``values``, or None."""
    if len(values) < 2 * limits.min_points:
        return None
    found = change_points(values)
    if not found:
        return None
    latest_level = found[-1].mean_after
    best: _Regression | None = None
    for change in found:
        if (
            change.p_value >= alpha
            or not _is_step_up(change.mean_before, change.mean_after, limits)
            or not _is_step_up(change.mean_before, latest_level, limits)
        ):
            continue
        percent = (
            (change.mean_after / change.mean_before - 1) * 100 if change.mean_before > 0 else 0.0
        )
        if best is None or percent > best.change_percent:
            best = _Regression(change, latest_level, percent)
    return best


def regressions(data: AnalyticsData, limits: AnalysisThresholds) -> list[Finding]:
    candidates = [(endpoint_key(e), e.response_time) for e in data.endpoints]
    alpha = limits.alpha / (len(candidates) + 1)
    findings = [
        finding
        for key, series in candidates
        if (finding := _finding(key, series, data, limits, alpha)) is not None
    ]
    if not findings:
        dealer_wide = _finding("", data.response_time, data, limits, alpha)
        findings += [dealer_wide] if dealer_wide is not None else []
    return findings


def _finding(
    key: str, series: Series, data: AnalyticsData, limits: AnalysisThresholds, alpha: float
) -> Finding | None:
    measured = Measured.of(series, data.range.start)
    found = find_regression(measured.values, limits, alpha)
    if found is None:
        return None
    change = found.change
    at = measured.points[change.index].time
    what = f"of {key}" if key else "across all endpoints"
    return Finding(
        type="response_time_regression",
        title=f"Response time regression{' on ' + key if key else ''} since {text.moment(at)}",
        description=(
            f"The average response time {what} stepped up from {text.ms(change.mean_before)} to"
            f" {text.ms(change.mean_after)} (+{text.percent(found.change_percent)}) at"
            f" {text.moment(at)} and is still at {text.ms(found.latest_level)} at the end of the"
            f" range (Welch's t-test p = {change.p_value:.2g}). Compare with what changed at that"
            " time: a deployment, configuration, data growth or a dependency."
        ),
        impact=Impact.HIGH if change.mean_after > limits.response_time_ms else Impact.MEDIUM,
        effort=Effort.MEDIUM,
        evidence={
            "changed_at": text.iso(at),
            "mean_before_ms": change.mean_before,
            "mean_after_ms": change.mean_after,
            "latest_level_ms": found.latest_level,
            "change_percent": found.change_percent,
            "p_value": change.p_value,
            "points_before": float(change.index),
            "points_after": float(len(measured) - change.index),
        },
        endpoint=key,
        urgency=found.change_percent,
    )
