"""Recommendation rules: each takes the analytics data and limits, returns findings."""

from __future__ import annotations

import logging

from reporter.analysis.rules.base import Finding, Rule, ranked
from reporter.analysis.rules.endpoints import cache_candidates, rising_errors
from reporter.analysis.rules.load import uneven_load
from reporter.analysis.rules.regression import regressions
from reporter.analysis.rules.resources import disk_full, memory_leak, pressure
from reporter.analysis.thresholds import AnalysisThresholds
from reporter.model import AnalyticsData, Recommendation

logger = logging.getLogger(__name__)

RULES: tuple[Rule, ...] = (
    cache_candidates,
    rising_errors,
    pressure,
    memory_leak,
    disk_full,
    regressions,
    uneven_load,
)


def recommend(data: AnalyticsData, limits: AnalysisThresholds) -> tuple[Recommendation, ...]:
    """Every rule's findings, ranked; a rule that fails is logged and skipped."""
    findings: list[Finding] = []
    for rule in RULES:
        try:
            findings += rule(data, limits)
        except Exception:  # one rule's bad day must not cost the others
            logger.exception("recommendation rule %s failed", rule.__name__)
    return ranked(findings, data)


__all__ = ["RULES", "Finding", "Rule", "recommend"]
