"""Parsers and encoders of the gateway: property tests."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reporter.http.errors import InvalidArgument
from reporter.http.jsonify import iso, num
from reporter.http.params import rule_from_body, time_range_param

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=6)
    ),
    max_leaves=20,
)
RULE_KEYS = st.sampled_from(
    [
        "alertType",
        "threshold",
        "dealerId",
        "metric",
        "name",
        "comparator",
        "aggregation",
        "windowSeconds",
        "forSeconds",
        "warningThreshold",
        "criticalThreshold",
        "channels",
        "labelMatchers",
        "enabled",
    ]
)


@given(st.dictionaries(RULE_KEYS, JSON, max_size=10) | JSON)
def test_any_rule_body_is_a_rule_or_a_named_invalid_argument(body: object) -> None:
    try:
        rule = rule_from_body(body)
    except InvalidArgument as exc:
        assert exc.status == 400 and exc.message
    else:
        assert rule.name and rule.condition.metric


@given(st.datetimes(timezones=st.just(UTC)))
def test_iso_round_trips_to_the_millisecond(moment: datetime) -> None:
    text = iso(moment)
    assert text is not None and text.endswith("Z")
    back = datetime.fromisoformat(text)
    assert abs(back - moment) < timedelta(milliseconds=1)


@given(st.floats() | st.none())
def test_num_never_emits_what_json_cannot_carry(value: float | None) -> None:
    out = num(value)
    assert out is None or math.isfinite(out)
    json.dumps(out, allow_nan=False)


@given(st.integers(1, 9999), st.sampled_from("mhd"))
def test_time_ranges_end_now(count: int, unit: str) -> None:
    try:
        found = time_range_param({"timeRange": f"{count}{unit}"}, NOW)
    except InvalidArgument as exc:
        assert "range" in exc.message
        return
    assert found.end == NOW and found.start < NOW


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ({"timeRange": "1h", "start": "2026-03-01T00:00:00Z"}, "timeRange"),
        ({"start": "2026-03-01T00:00:00Z"}, "start and end"),
        ({"start": "yesterday", "end": "2026-03-01T00:00:00Z"}, "start"),
        ({"start": "2026-03-02T00:00:00Z", "end": "2026-03-01T00:00:00Z"}, "not after start"),
    ],
)
def test_bad_ranges_name_the_parameter(query: dict[str, str], named: str) -> None:
    with pytest.raises(InvalidArgument, match=named):
        time_range_param(query, NOW)
