"""The entry point: trends and recommendations together, ranked and repeatable."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from collector.health import HealthThresholds
from reporter.analysis import AnalysisThresholds, analyse, recommend, text
from reporter.model import AnalyticsData, Direction, Effort, Impact

from .factory import GIB, analytics, endpoint, line, noise, resource

_IMPACT = [Impact.HIGH, Impact.MEDIUM, Impact.LOW]
_EFFORT = [Effort.LOW, Effort.MEDIUM, Effort.HIGH]


def troubled(reverse: bool = False) -> AnalyticsData:
    """A week with several problems at once."""
    n = 7 * 24
    hours = [60.0 if 9 <= h % 24 < 17 else 5.0 for h in range(n)]
    endpoints = [
        endpoint("/api/inventory", calls_per_hour=5000.0, p95_ms=840.0),
        endpoint("/api/specials", calls_per_hour=3000.0, p95_ms=260.0),
        *[endpoint(f"/api/q{i}", calls_per_hour=10.0 + i) for i in range(8)],
    ]
    disk_used = line(n, 400 * GIB, 0.5 * GIB, sigma=0.1 * GIB, seed=1)
    return analytics(
        n=n,
        response_time=line(n, 100, 0.5, sigma=5, seed=2),
        throughput=hours,
        endpoints=endpoints[::-1] if reverse else endpoints,
        resources=[resource("cpu.percent", noise(n, 90, 3, seed=3))],
        host={
            "disk.used_bytes": (resource("disk.used_bytes", disk_used, {"mount": "/"}, "bytes"),),
            "disk.total_bytes": (resource("disk.total_bytes", [600 * GIB] * n, {"mount": "/"}),),
        },
    )


def test_analyse_gives_trends_and_ranked_recommendations() -> None:
    trends, found = analyse(troubled())
    assert {t.metric: t.direction for t in trends}["response_time"] is Direction.DEGRADING
    assert {r.type for r in found} >= {"cache_endpoint", "cpu_pressure", "disk_full", "uneven_load"}
    assert [r.priority for r in found] == list(range(1, len(found) + 1))
    ranks = [(_IMPACT.index(r.impact), _EFFORT.index(r.effort)) for r in found]
    assert ranks == sorted(ranks)
    assert found[-1].type == "uneven_load"  # the only low-impact one
    assert all(r.dealer_id == "sunrise" and r.range == troubled().range for r in found)


def test_the_same_data_gives_the_same_answer_in_any_order() -> None:
    assert analyse(troubled()) == analyse(troubled())
    assert recommend(troubled()) == recommend(troubled(reverse=True))


def test_descriptions_carry_the_figures_of_the_evidence() -> None:
    for found in recommend(troubled()):
        assert any(ch.isdigit() for ch in found.description), found.type
        assert found.evidence, found.type
        assert found.title and found.description.endswith(".")


def test_health_thresholds_flow_into_the_rules() -> None:
    lenient = HealthThresholds(response_time_ms=1000.0, cpu_percent=95.0)
    types = {r.type for r in recommend(troubled(), lenient)}
    assert "cache_endpoint" not in types and "cpu_pressure" not in types
    assert "disk_full" in types


def test_healthy_data_has_nothing_to_recommend() -> None:
    trends, found = analyse(analytics(n=96, endpoints=[endpoint()]))
    assert found == ()
    assert all(t.direction is Direction.STABLE for t in trends)


def test_empty_data_is_insufficient_not_an_error() -> None:
    data = dataclasses.replace(
        analytics(n=24, response_time=[], error_rate=[], throughput=[]), endpoints=()
    )
    trends, found = analyse(data)
    assert all(t.direction is Direction.INSUFFICIENT_DATA for t in trends)
    assert found == ()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"alpha": 0.0}, "alpha must be a positive number"),
        ({"alpha": 1.5}, "alpha must be at most 1"),
        ({"min_points": 2}, "min_points must be at least 3"),
        ({"response_time_ms": float("nan")}, "response_time_ms must be a positive number"),
    ],
)
def test_bad_limits_are_refused_naming_the_field(change: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        AnalysisThresholds(**change)  # type: ignore[arg-type]


def test_text_formatting() -> None:
    assert [text.number(v) for v in (1234.5, 56.78, 3.14159, 0.01234)] == [
        "1,234",
        "56.8",
        "3.14",
        "0.0123",
    ]
    assert text.size(1.5 * GIB) == "1.50 GiB" and text.size(512) == "512 B"
    assert [text.hours(v) for v in (0.75, 17.5, 76.8)] == ["45 min", "17.5 h", "3.2 days"]
    assert text.moment(datetime(2026, 3, 4, 12, 0, tzinfo=UTC)) == "2026-03-04 12:00 UTC"
    assert text.hour_ranges([22, 23, 0, 9]) == "09:00-10:00, 22:00-01:00"
    assert text.hour_ranges(range(9, 17)) == "09:00-17:00"


@given(st.sets(st.integers(0, 23), min_size=1, max_size=23))
def test_hour_ranges_name_exactly_the_chosen_hours(hours: set[int]) -> None:
    named: set[int] = set()
    for part in text.hour_ranges(hours).split(", "):
        first, end = (int(side[:2]) for side in part.split("-"))
        length = (end - first) % 24
        named |= {(first + i) % 24 for i in range(length)}
    assert named == hours
