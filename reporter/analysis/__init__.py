"""Analysis of a dealer's analytics: trend verdicts and ranked recommendations.

Pure functions over :class:`reporter.model.AnalyticsData`: no I/O and no
clock (every time comes from the data), so the same data always gives the
same trends, recommendations and text.

- :func:`trends`: response time, error rate and throughput, each judged by a
  Mann-Kendall test with Theil-Sen slope (see trend.py);
- :func:`recommend`: the rules in rules/ (caching, rising error rates,
  CPU/memory pressure, memory leaks, disks filling, response-time
  regressions, uneven load), ranked by impact and effort;
- :func:`analyse`: both.
"""

from __future__ import annotations

from collector.health import HealthThresholds
from reporter.analysis import rules
from reporter.analysis import trend as _trend
from reporter.analysis.thresholds import AnalysisThresholds
from reporter.model import AnalyticsData, Recommendation, Trend

Limits = HealthThresholds | AnalysisThresholds | None


def _limits(thresholds: Limits) -> AnalysisThresholds:
    if thresholds is None:
        return AnalysisThresholds()
    if isinstance(thresholds, HealthThresholds):
        return AnalysisThresholds.from_health(thresholds)
    return thresholds


def trends(data: AnalyticsData, thresholds: Limits = None) -> tuple[Trend, ...]:
    """Trends of response time, error rate and throughput, in that order."""
    return _trend.trends(data, _limits(thresholds))


def recommend(data: AnalyticsData, thresholds: Limits = None) -> tuple[Recommendation, ...]:
    """Recommendations, priority 1 first."""
    return rules.recommend(data, _limits(thresholds))


def analyse(
    data: AnalyticsData, thresholds: Limits = None
) -> tuple[tuple[Trend, ...], tuple[Recommendation, ...]]:
    limits = _limits(thresholds)
    return _trend.trends(data, limits), rules.recommend(data, limits)


__all__ = ["AnalysisThresholds", "analyse", "recommend", "trends"]
