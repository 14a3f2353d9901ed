"""Endpoint rules: caching candidates and rising error rates."""

from __future__ import annotations

from reporter.analysis import recommend
from reporter.model import Impact, Recommendation

from .factory import analytics, endpoint, line, noise


def of_type(found: tuple[Recommendation, ...], kind: str) -> list[Recommendation]:
    return [r for r in found if r.type == kind]


def quiet_endpoints(count: int = 9) -> list:  # type: ignore[type-arg]
    return [
        endpoint(f"/api/quiet{i}", calls_per_hour=100.0 + i, p95_ms=150.0) for i in range(count)
    ]


def test_a_busy_slow_get_endpoint_is_a_cache_candidate() -> None:
    slow = endpoint("/api/inventory", calls_per_hour=5000.0, p95_ms=840.0, avg_ms=410.0)
    (found,) = of_type(recommend(analytics(endpoints=[slow, *quiet_endpoints()])), "cache_endpoint")
    assert found.endpoint == "GET /api/inventory"
    assert found.evidence["p95_ms"] == 840.0
    assert found.evidence["calls_per_hour"] == 5000.0
    assert found.evidence["busiest_rank"] == 1.0
    assert found.impact is Impact.HIGH  # p95 above twice the 200 ms threshold
    assert "840 ms" in found.description and "5,000 calls/hour" in found.description


def test_a_slow_but_rarely_called_endpoint_is_not_worth_caching() -> None:
    rare = endpoint("/api/export", calls_per_hour=5.0, p95_ms=3000.0)
    busy = endpoint("/api/inventory", calls_per_hour=5000.0, p95_ms=90.0)
    assert of_type(recommend(analytics(endpoints=[rare, busy])), "cache_endpoint") == []


def test_a_slow_endpoint_outside_the_top_share_is_not_recommended() -> None:
    # Ten endpoints: only the busiest 20 % (two) are candidates; the slow one is 3rd.
    endpoints = [endpoint(f"/api/e{i}", calls_per_hour=1000.0 - i, p95_ms=90.0) for i in range(10)]
    endpoints[2] = endpoint("/api/e2", calls_per_hour=998.0, p95_ms=900.0)
    assert of_type(recommend(analytics(endpoints=endpoints)), "cache_endpoint") == []


def test_fast_or_non_get_endpoints_are_not_cache_candidates() -> None:
    fast = endpoint("/api/inventory", calls_per_hour=5000.0, p95_ms=150.0)
    post = endpoint("/api/orders", "POST", calls_per_hour=6000.0, p95_ms=900.0)
    assert of_type(recommend(analytics(endpoints=[fast, post])), "cache_endpoint") == []


def test_a_rising_error_rate_is_reported_with_its_trend() -> None:
    # 0.05 % -> about 2.4 % over 48 hours, noisy.
    rising = endpoint(
        "/api/leads",
        "POST",
        error_rate=[max(0.0, v) for v in line(48, 0.05, 0.05, sigma=0.3, seed=1)],
        errors=120,
        last_error="503 upstream timeout",
    )
    flat = endpoint("/api/inventory", error_rate=noise(48, 0.5, 0.2, seed=2), errors=20)
    (found,) = of_type(recommend(analytics(endpoints=[rising, flat])), "rising_error_rate")
    assert found.endpoint == "POST /api/leads"
    assert 1.5 < float(found.evidence["error_rate_end_percent"]) < 3.5
    assert float(found.evidence["slope_percent_points_per_hour"]) > 0.03
    assert float(found.evidence["p_value"]) < 0.05
    assert found.impact is Impact.HIGH  # above ten times the 0.1 % threshold
    assert "503 upstream timeout" in found.description


def test_one_spike_of_errors_is_not_a_rising_error_rate() -> None:
    values = noise(48, 0.3, 0.1, seed=3)
    values[40] = 25.0
    spiky = endpoint("/api/leads", error_rate=values, errors=30)
    assert of_type(recommend(analytics(endpoints=[spiky])), "rising_error_rate") == []


def test_a_rise_that_stays_below_the_threshold_is_not_reported() -> None:
    # 0.01 % -> 0.05 %: significant, but under the 0.1 % threshold.
    below = endpoint("/api/leads", error_rate=line(48, 0.01, 0.04 / 47, sigma=0.002, seed=4))
    assert of_type(recommend(analytics(endpoints=[below])), "rising_error_rate") == []


def test_a_falling_error_rate_is_not_reported() -> None:
    falling = endpoint("/api/leads", error_rate=line(48, 5.0, -0.1, sigma=0.2, seed=5))
    assert of_type(recommend(analytics(endpoints=[falling])), "rising_error_rate") == []
