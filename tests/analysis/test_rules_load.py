"""Capacity planning from traffic by hour of day."""

from __future__ import annotations

import pytest

from reporter.analysis import recommend
from reporter.model import Recommendation

from .factory import analytics, noise


def of_type(found: tuple[Recommendation, ...], kind: str) -> list[Recommendation]:
    return [r for r in found if r.type == kind]


def business_hours(days: int, quiet: float, busy: float, seed: int = 0) -> list[float]:
    """Requests/min per hour: ``busy`` from 09:00 to 17:00 UTC, ``quiet`` otherwise."""
    jitter = noise(days * 24, 0.0, 1.0, seed=seed)
    return [
        max(0.0, (busy if 9 <= hour % 24 < 17 else quiet) + j)
        for hour, j in zip(range(days * 24), jitter, strict=True)
    ]


def test_business_hours_traffic_is_uneven_load_with_its_peak() -> None:
    data = analytics(n=7 * 24, throughput=business_hours(7, quiet=5, busy=60))
    (found,) = of_type(recommend(data), "uneven_load")
    assert found.evidence["busy_hours_utc"] == "09:00-17:00"
    peak_hour = str(found.evidence["peak_hour_utc"])
    assert 9 <= int(peak_hour[:2]) < 17
    # Mean of the hours: (8 * 60 + 16 * 5) / 24 = 23.3 per min; peak about 60.
    assert float(found.evidence["mean_per_min"]) == pytest.approx(23.3, abs=1)
    assert float(found.evidence["peak_to_mean"]) == pytest.approx(60 / 23.3, abs=0.15)
    assert float(found.evidence["days_covered"]) == 7.0
    assert "09:00-17:00 UTC" in found.description


def test_even_traffic_is_not_uneven_load() -> None:
    data = analytics(n=3 * 24, throughput=noise(3 * 24, 30, 3))
    assert of_type(recommend(data), "uneven_load") == []


def test_less_than_a_day_of_data_says_nothing_about_hours() -> None:
    data = analytics(n=20, throughput=business_hours(1, quiet=5, busy=60)[:20])
    assert of_type(recommend(data), "uneven_load") == []


def test_one_burst_over_days_is_not_a_pattern() -> None:
    values = noise(3 * 24, 30, 3, seed=2)
    values[40] = 500.0  # once, at 16:00 on day two
    data = analytics(n=3 * 24, throughput=values)
    assert of_type(recommend(data), "uneven_load") == []
