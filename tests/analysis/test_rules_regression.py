"""Response-time regressions that began at a point in time."""

from __future__ import annotations

import pytest

from reporter.analysis import recommend
from reporter.model import Impact, Recommendation

from .factory import HOUR, START, analytics, endpoint, noise


def of_type(found: tuple[Recommendation, ...], kind: str) -> list[Recommendation]:
    return [r for r in found if r.type == kind]


def stepped(n: int, cut: int, before: float, after: float, sigma: float, seed: int) -> list[float]:
    values = noise(n, before, sigma, seed=seed)
    return values[:cut] + [v + after - before for v in values[cut:]]


def test_a_step_up_in_an_endpoints_response_time_is_a_regression() -> None:
    slow = endpoint("/api/quotes", response_time=stepped(96, 60, 120, 260, 15, seed=1))
    steady = endpoint("/api/inventory", response_time=noise(96, 80, 10, seed=2))
    (found,) = of_type(
        recommend(analytics(n=96, endpoints=[slow, steady])), "response_time_regression"
    )
    assert found.endpoint == "GET /api/quotes"
    changed_at = (START + 60 * HOUR).isoformat().replace("+00:00", "Z")
    assert found.evidence["changed_at"] in {
        (START + (60 + d) * HOUR).isoformat().replace("+00:00", "Z") for d in (-2, -1, 0, 1, 2)
    }, f"expected about {changed_at}"
    assert float(found.evidence["mean_before_ms"]) == pytest.approx(120, abs=8)
    assert float(found.evidence["mean_after_ms"]) == pytest.approx(260, abs=8)
    assert float(found.evidence["p_value"]) < 1e-6
    assert found.impact is Impact.HIGH  # now above the 200 ms threshold
    assert "2026-03-04 12:00 UTC" in found.title or "since 2026-03-04" in found.title


def test_noisy_flat_response_times_have_no_regression() -> None:
    endpoints = [
        endpoint(f"/api/e{i}", response_time=noise(96, 100, 25, seed=10 + i)) for i in range(10)
    ]
    data = analytics(n=96, response_time=noise(96, 100, 25, seed=3), endpoints=endpoints)
    assert of_type(recommend(data), "response_time_regression") == []


def test_a_single_spike_is_not_a_regression() -> None:
    values = noise(96, 100, 10, seed=4)
    values[70] = 5000.0
    data = analytics(n=96, endpoints=[endpoint("/api/quotes", response_time=values)])
    assert of_type(recommend(data), "response_time_regression") == []


def test_a_regression_already_fixed_is_not_reported() -> None:
    values = stepped(96, 30, 100, 250, 10, seed=5)
    values[60:] = noise(36, 100, 10, seed=6)
    data = analytics(n=96, endpoints=[endpoint("/api/quotes", response_time=values)])
    assert of_type(recommend(data), "response_time_regression") == []


def test_a_small_step_is_not_worth_reporting() -> None:
    # +10 %: real and significant with this little noise, but under the 20 % minimum.
    values = stepped(96, 50, 100, 110, 1, seed=7)
    data = analytics(n=96, endpoints=[endpoint("/api/quotes", response_time=values)])
    assert of_type(recommend(data), "response_time_regression") == []


def test_the_dealer_wide_series_speaks_when_no_endpoint_explains_it() -> None:
    data = analytics(n=96, response_time=stepped(96, 40, 90, 150, 8, seed=8))
    (found,) = of_type(recommend(data), "response_time_regression")
    assert found.endpoint == ""
    assert found.impact is Impact.MEDIUM  # 150 ms is still under the threshold
    assert "across all endpoints" in found.description
