"""The limits the trend tests and recommendation rules use, as one value object.

The four alerting figures default to :class:`collector.health.HealthThresholds`
(so ALERT_THRESHOLD_* settings flow through :meth:`AnalysisThresholds.from_health`);
the rest are statistical and practical limits, each explained where it is used.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from collector.health import HealthThresholds

_HEALTH = HealthThresholds()


@dataclass(frozen=True, slots=True)
class AnalysisThresholds:
    # From the alerting settings.
    response_time_ms: float = _HEALTH.response_time_ms
    error_rate_percent: float = _HEALTH.error_rate_percent
    cpu_percent: float = _HEALTH.cpu_percent
    memory_percent: float = _HEALTH.memory_percent
    # Trend tests: significance, fewest points, smallest change over the range
    # that counts (a tiny but significant drift is "stable").
    alpha: float = 0.05
    min_points: int = 8
    min_change_percent: float = 5.0
    # Sustained pressure: above the threshold in at least this share of buckets.
    pressure_min_share: float = 0.5
    # Caching: p95 above response_time_ms, among the busiest endpoints (this
    # share of them by calls/hour, at least one) and at least this busy.
    cache_top_share: float = 0.2
    cache_min_calls_per_hour: float = 60.0
    # Regressions: a step up by at least this much, relative and absolute.
    regression_min_change_percent: float = 20.0
    regression_min_increase_ms: float = 10.0
    # Forecasts: only exhaustion within these horizons is worth a recommendation.
    memory_horizon_hours: float = 30 * 24.0
    disk_horizon_hours: float = 30 * 24.0
    # Capacity planning: peak hour at least this many times the mean hour,
    # over at least this many hours of data.
    uneven_min_peak_to_mean: float = 2.0
    uneven_min_hours: float = 24.0

    def __post_init__(self) -> None:
        for spec in dataclasses.fields(self):
            value = getattr(self, spec.name)
            if not math.isfinite(value) or value <= 0:
                raise ValueError(f"{spec.name} must be a positive number, got {value!r}")
        for name in ("alpha", "pressure_min_share", "cache_top_share"):
            if getattr(self, name) > 1:
                raise ValueError(f"{name} must be at most 1, got {getattr(self, name)!r}")
        if self.min_points < 3:
            raise ValueError(f"min_points must be at least 3, got {self.min_points!r}")

    @classmethod
    def from_health(cls, health: HealthThresholds) -> AnalysisThresholds:
        return cls(
            response_time_ms=health.response_time_ms,
            error_rate_percent=health.error_rate_percent,
            cpu_percent=health.cpu_percent,
            memory_percent=health.memory_percent,
        )

    @property
    def error_rate_min_change(self) -> float:
        """Smallest error-rate change (percentage points) worth a verdict: 1/10 threshold."""
        return self.error_rate_percent / 10
