"""The codec: wire batches decode to the model faithfully; results encode to acks."""

from __future__ import annotations

import dataclasses
import hashlib

import grpc
from hypothesis import given
from hypothesis import strategies as st
from ingest_batches import encode, valid_batches

from collector.ingest import codec
from collector.ingest.validate import Limits
from dealerpulse.model import MetricBatch, WriteOutcome, WriteResult
from dealerpulse.v1 import ingest_pb2 as pb

NOW_MS = 1_767_225_600_000
batches = valid_batches(NOW_MS, Limits())


def without_digest(batch: MetricBatch) -> MetricBatch:
    return dataclasses.replace(batch, digest=b"")


@given(batches)
def test_decode_inverts_encode(batch: MetricBatch) -> None:
    decoded = codec.decode_batch(encode(batch))
    assert without_digest(decoded.batch) == batch


@given(batches)
def test_digest_and_size_are_those_of_the_deterministic_encoding(batch: MetricBatch) -> None:
    message = encode(batch)
    wire = message.SerializeToString(deterministic=True)
    decoded = codec.decode_batch(message)
    assert decoded.batch.digest == hashlib.sha256(wire).digest()
    assert decoded.encoded_bytes == len(wire)


@given(batches)
def test_digest_ignores_map_order_on_the_wire(batch: MetricBatch) -> None:
    # Rebuild every label map in reverse insertion order: same content, same digest.
    message = encode(batch)
    for sample in message.samples:
        items = list(sample.labels.items())
        sample.labels.clear()
        for key, value in reversed(items):
            sample.labels[key] = value
    reparsed = pb.Batch.FromString(message.SerializeToString())
    original = codec.decode_batch(encode(batch)).batch.digest
    assert codec.decode_batch(reparsed).batch.digest == original


@given(batches)
def test_other_content_has_another_digest(batch: MetricBatch) -> None:
    changed = dataclasses.replace(batch, created_ms=batch.created_ms + 1)
    assert codec.decode_batch(encode(changed)).batch.digest != (
        codec.decode_batch(encode(batch)).batch.digest
    )


@given(st.integers(1, 2**63 - 1), st.integers(0, 10**6))
def test_write_results_become_acks(seq: int, stored: int) -> None:
    ack = codec.encode_write_result(seq, WriteResult(WriteOutcome.STORED, stored))
    assert (ack.seq, ack.status, ack.samples_stored) == (seq, pb.Ack.STORED, stored)
    ack = codec.encode_write_result(seq, WriteResult(WriteOutcome.DUPLICATE))
    assert (ack.seq, ack.status) == (seq, pb.Ack.DUPLICATE)
    ack = codec.encode_write_result(seq, WriteResult(WriteOutcome.CONFLICT))
    assert (ack.status, ack.code, ack.field) == (pb.Ack.REJECTED, 3, "seq")
    assert f"seq {seq} was already stored with different content" == ack.message


def test_rejection_and_retry_acks_carry_the_grpc_code_number() -> None:
    rejection = codec.Rejection(grpc.StatusCode.PERMISSION_DENIED, "dealer_id", "not yours")
    ack = codec.encode_rejection(9, rejection)
    assert (ack.status, ack.code, ack.field, ack.message) == (
        pb.Ack.REJECTED,
        7,
        "dealer_id",
        "not yours",
    )
    retry = codec.encode_retry(9, grpc.StatusCode.RESOURCE_EXHAUSTED, "busy", 0.25)
    assert (retry.status, retry.code, retry.retry_after_ms) == (pb.Ack.RETRY, 8, 250)
    # A retry never says "resend at once": at least one millisecond.
    assert codec.encode_retry(9, grpc.StatusCode.UNAVAILABLE, "down", 0.0).retry_after_ms == 1


def test_hello_takes_the_dealer_from_the_token_not_the_request() -> None:
    request = pb.HelloRequest(agent_id="a1", hostname="dms", agent_version="1.0", boot_id="b")
    agent = codec.decode_hello(request, "sunrise-motors")
    assert (agent.agent_id, agent.dealer_id, agent.hostname, agent.version, agent.boot_id) == (
        "a1",
        "sunrise-motors",
        "dms",
        "1.0",
        "b",
    )
