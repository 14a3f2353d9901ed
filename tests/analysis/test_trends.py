"""Dealer-wide trends: a statistical verdict per series, not a comparison of two numbers."""

from __future__ import annotations

import numpy as np
import pytest

from reporter.analysis import AnalysisThresholds, trends
from reporter.model import Direction, Trend

from .factory import analytics, line, noise


def by_metric(found: tuple[Trend, ...]) -> dict[str, Trend]:
    return {t.metric: t for t in found}


def test_trends_cover_the_three_metrics_in_order() -> None:
    assert [t.metric for t in trends(analytics())] == ["response_time", "error_rate", "throughput"]


def test_flat_noisy_series_are_stable() -> None:
    found = trends(analytics(n=200))
    assert all(t.direction is Direction.STABLE for t in found)
    assert all(t.n == 200 and t.p_value is not None for t in found)


def test_rising_response_time_is_degrading_with_its_slope() -> None:
    # 100 ms -> 148 ms over 48 hours, noise sd 5 ms.
    found = by_metric(trends(analytics(response_time=line(48, 100, 1.0, sigma=5, seed=4))))
    trend = found["response_time"]
    assert trend.direction is Direction.DEGRADING
    assert trend.p_value is not None and trend.p_value < 0.05
    assert trend.slope_per_hour == pytest.approx(1.0, rel=0.15)
    assert trend.change_percent == pytest.approx(47, rel=0.2)


def test_falling_response_time_is_improving() -> None:
    found = by_metric(trends(analytics(response_time=line(48, 200, -2.0, sigma=5, seed=5))))
    assert found["response_time"].direction is Direction.IMPROVING


def test_rising_error_rate_is_degrading() -> None:
    found = by_metric(trends(analytics(error_rate=line(48, 0.05, 0.02, sigma=0.05, seed=6))))
    assert found["error_rate"].direction is Direction.DEGRADING


def test_throughput_increases_and_decreases() -> None:
    up = by_metric(trends(analytics(throughput=line(48, 30, 0.5, sigma=2, seed=7))))
    down = by_metric(trends(analytics(throughput=line(48, 30, -0.5, sigma=2, seed=8))))
    assert up["throughput"].direction is Direction.INCREASING
    assert down["throughput"].direction is Direction.DECREASING


def test_a_significant_but_tiny_drift_is_stable() -> None:
    # +1 % over the range, with so little noise that the test is sure of it.
    values = line(200, 100.0, 0.005, sigma=0.01, seed=9)
    trend = by_metric(trends(analytics(n=200, response_time=values)))["response_time"]
    assert trend.p_value is not None and trend.p_value < 1e-6
    assert trend.change_percent == pytest.approx(1.0, rel=0.1)
    assert trend.direction is Direction.STABLE


def test_a_tiny_error_rate_change_is_stable_even_when_doubling() -> None:
    # 0.001 % -> 0.002 %: doubles, but a thousandth of a percent is nothing to report.
    values = line(48, 0.001, 0.001 / 47, sigma=0.00001, seed=10)
    trend = by_metric(trends(analytics(error_rate=values)))["error_rate"]
    assert trend.change_percent is not None and trend.change_percent > 50
    assert trend.direction is Direction.STABLE


def test_a_single_spike_is_not_a_trend() -> None:
    values = noise(96, 100, 10, seed=13)
    values[90] = 3000.0
    trend = by_metric(trends(analytics(n=96, response_time=values)))["response_time"]
    assert trend.direction is Direction.STABLE


def test_too_few_points_is_insufficient_data() -> None:
    sparse = [None] * 40 + line(7, 100, 20)
    found = by_metric(trends(analytics(n=47, response_time=sparse)))
    trend = found["response_time"]
    assert trend.direction is Direction.INSUFFICIENT_DATA
    assert (trend.n, trend.p_value, trend.slope_per_hour) == (7, None, None)


def test_gaps_do_not_bend_the_slope() -> None:
    # 2 ms per hour, measured only in the first and last 10 hours of 48.
    values: list[float | None] = [100 + 2.0 * i for i in range(48)]
    values[10:38] = [None] * 28
    trend = by_metric(trends(analytics(response_time=values)))["response_time"]
    assert trend.n == 20
    assert trend.slope_per_hour == pytest.approx(2.0)


def test_a_constant_series_is_stable() -> None:
    trend = by_metric(trends(analytics(throughput=[42.0] * 48)))["throughput"]
    assert trend.direction is Direction.STABLE
    assert (trend.p_value, trend.slope_per_hour) == (1.0, 0.0)


def test_shuffled_noise_is_mostly_stable() -> None:
    rng = np.random.default_rng(2026)
    stable = 0
    for _ in range(60):
        values = list(rng.permutation(noise(96, 120, 15, seed=int(rng.integers(1 << 30)))))
        trend = by_metric(trends(analytics(n=96, response_time=values)))["response_time"]
        stable += trend.direction is Direction.STABLE
    assert stable >= 54


def test_limits_can_be_tightened() -> None:
    values = line(48, 100, 0.1, sigma=0.5, seed=12)  # +4.7 % over the range
    data = analytics(response_time=values)
    assert by_metric(trends(data))["response_time"].direction is Direction.STABLE
    strict = AnalysisThresholds(min_change_percent=2.0)
    assert by_metric(trends(data, strict))["response_time"].direction is Direction.DEGRADING
