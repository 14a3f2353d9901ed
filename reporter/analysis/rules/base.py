"""What a rule returns, and how findings become ranked recommendations.

Priority: impact first (high before low), then effort (low before high),
then each rule's own urgency (bigger first: e.g. sooner exhaustion), then
type, endpoint and title, so the order is total and repeatable.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from reporter.analysis.thresholds import AnalysisThresholds
from reporter.model import AnalyticsData, Effort, Impact, Recommendation

_IMPACT_RANK = {Impact.HIGH: 0, Impact.MEDIUM: 1, Impact.LOW: 2}
_EFFORT_RANK = {Effort.LOW: 0, Effort.MEDIUM: 1, Effort.HIGH: 2}


@dataclass(frozen=True, slots=True)
class Finding:
    type: str
    title: str
    description: str
    impact: Impact
    effort: Effort
    evidence: Mapping[str, float | str]
    endpoint: str = ""
    urgency: float = 0.0  # within one impact/effort class, bigger goes first


Rule = Callable[[AnalyticsData, AnalysisThresholds], list[Finding]]


def ranked(findings: Iterable[Finding], data: AnalyticsData) -> tuple[Recommendation, ...]:
    ordered = sorted(
        findings,
        key=lambda f: (
            _IMPACT_RANK[f.impact],
            _EFFORT_RANK[f.effort],
            -f.urgency,
            f.type,
            f.endpoint,
            f.title,
        ),
    )
    return tuple(
        Recommendation(
            type=f.type,
            title=f.title,
            description=f.description,
            impact=f.impact,
            effort=f.effort,
            priority=position,
            dealer_id=data.dealer_id,
            range=data.range,
            evidence=dict(f.evidence),
            endpoint=f.endpoint,
        )
        for position, f in enumerate(ordered, start=1)
    )


def label_text(labels: Mapping[str, str]) -> str:
    """' (mount=/var, agent=a1)' or '' for host-wide figures."""
    if not labels:
        return ""
    return " (" + ", ".join(f"{k}={v}" for k, v in sorted(labels.items())) + ")"
