"""Validation: valid batches always pass; one spoiled field is always caught and named."""

from __future__ import annotations

import dataclasses

import grpc
import pytest
from hypothesis import given
from hypothesis import strategies as st
from ingest_batches import (
    CORRUPTIONS,
    Corruption,
    endpoint,
    expected_field,
    good_batch,
    sample,
    valid_batches,
)

from collector.abc import AgentInfo
from collector.ingest.validate import Caller, Limits, validate_agent, validate_batch
from dealerpulse.model import Gap, MetricBatch

NOW_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
LIMITS = Limits(max_samples=50)
DEALER = "sunrise-motors"


def caller(encoded_bytes: int = 100, dealer_known: bool = True) -> Caller:
    return Caller(DEALER, dealer_known, encoded_bytes, NOW_MS)


def with_content(batch: MetricBatch) -> MetricBatch:
    """Corruptions spoil the first sample and endpoint: make sure there are ones."""
    return dataclasses.replace(
        batch,
        samples=(sample(NOW_MS, name="zz.first", value=1.0), *batch.samples),
        endpoints=(endpoint(NOW_MS), *batch.endpoints),
    )


@given(valid_batches(NOW_MS, LIMITS))
def test_valid_batches_always_pass(batch: MetricBatch) -> None:
    assert validate_batch(batch, caller(), LIMITS) is None


@given(valid_batches(NOW_MS, LIMITS), st.sampled_from(CORRUPTIONS))
def test_one_spoiled_field_is_caught_and_named(batch: MetricBatch, corruption: Corruption) -> None:
    spoiled = corruption.spoil(with_content(batch), NOW_MS, LIMITS)
    rejection = validate_batch(spoiled, caller(), LIMITS)
    assert rejection is not None, corruption.name
    assert rejection.code == corruption.code
    assert rejection.field == expected_field(corruption, spoiled)
    assert rejection.field in rejection.message


@pytest.mark.parametrize("corruption", CORRUPTIONS, ids=lambda c: c.name)
def test_each_corruption_of_a_plain_batch(corruption: Corruption) -> None:
    spoiled = corruption.spoil(good_batch(DEALER, "agent-1", 7, NOW_MS), NOW_MS, LIMITS)
    rejection = validate_batch(spoiled, caller(), LIMITS)
    assert rejection is not None
    assert rejection.code == corruption.code
    assert rejection.field == expected_field(corruption, spoiled)


def test_a_plain_batch_passes() -> None:
    assert validate_batch(good_batch(DEALER, "agent-1", 7, NOW_MS), caller(), LIMITS) is None


@given(valid_batches(NOW_MS, LIMITS))
def test_another_dealer_is_permission_denied(batch: MetricBatch) -> None:
    other = dataclasses.replace(batch, dealer_id="other-dealer")
    rejection = validate_batch(other, caller(), LIMITS)
    assert rejection is not None
    assert (rejection.code, rejection.field) == (grpc.StatusCode.PERMISSION_DENIED, "dealer_id")


def test_unknown_dealer_is_invalid() -> None:
    batch = dataclasses.replace(good_batch(DEALER, "a", 1, NOW_MS), dealer_id="ghost-motors")
    rejection = validate_batch(batch, caller(dealer_known=False), LIMITS)
    assert rejection is not None
    assert (rejection.code, rejection.field) == (grpc.StatusCode.INVALID_ARGUMENT, "dealer_id")
    assert "ghost-motors" in rejection.message


@given(st.integers(LIMITS.max_batch_bytes + 1, 2**31))
def test_oversized_encoding_is_refused_as_batch(size: int) -> None:
    rejection = validate_batch(good_batch(DEALER, "a", 1, NOW_MS), caller(size), LIMITS)
    assert rejection is not None
    assert (rejection.code, rejection.field) == (grpc.StatusCode.INVALID_ARGUMENT, "batch")
    assert str(size) in rejection.message


def test_time_limits_are_exact_at_the_edges() -> None:
    edge_future = NOW_MS + int(LIMITS.max_future_s * 1000)
    edge_old = NOW_MS - int(LIMITS.retention_s * 1000)
    for time_ms, ok in ((edge_future, True), (edge_future + 1, False)):
        batch = dataclasses.replace(good_batch(DEALER, "a", 1, NOW_MS), samples=(sample(time_ms),))
        assert (validate_batch(batch, caller(), LIMITS) is None) is ok
    for time_ms, ok in ((edge_old, True), (edge_old - 1, False)):
        batch = dataclasses.replace(good_batch(DEALER, "a", 1, NOW_MS), samples=(sample(time_ms),))
        assert (validate_batch(batch, caller(), LIMITS) is None) is ok


def test_retention_is_configurable() -> None:
    one_week = Limits(retention_s=7 * 86_400)
    ten_days_ago = NOW_MS - 10 * 86_400_000
    batch = dataclasses.replace(good_batch(DEALER, "a", 1, NOW_MS), samples=(sample(ten_days_ago),))
    assert validate_batch(batch, caller(), LIMITS) is None
    rejection = validate_batch(batch, caller(), one_week)
    assert rejection is not None
    assert rejection.field == "samples[0].time_unix_ms"
    assert "retention is 7 days" in rejection.message


@pytest.mark.parametrize(
    ("gap", "field"),
    [
        (Gap(5, 4, 0, 1, 1, 1, "rejected"), "gaps[0].last_seq"),
        (Gap(1, 2, 10, 9, 1, 1, "rejected"), "gaps[0].to_unix_ms"),
        (Gap(1, 2, 0, 1, 1, 1, ""), "gaps[0].reason"),
        (Gap(1, 2, 0, NOW_MS + 3_600_000, 1, 1, "rejected"), "gaps[0].to_unix_ms"),
    ],
)
def test_gap_sanity(gap: Gap, field: str) -> None:
    batch = dataclasses.replace(good_batch(DEALER, "a", 1, NOW_MS), gaps=(gap,))
    rejection = validate_batch(batch, caller(), LIMITS)
    assert rejection is not None
    assert rejection.field == field


def test_agent_hello_fields_are_checked() -> None:
    assert validate_agent(AgentInfo("agent-1", DEALER, "dms-01", "0.1", "b"), LIMITS) is None
    empty = validate_agent(AgentInfo("", DEALER, "dms-01", "0.1", "b"), LIMITS)
    assert empty is not None and empty.field == "agent_id"
    long_host = validate_agent(AgentInfo("a", DEALER, "h" * 300, "0.1", "b"), LIMITS)
    assert long_host is not None and long_host.field == "hostname"
