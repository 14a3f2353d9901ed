"""agent.codec: what the agent puts on the wire is what the generated classes read."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.codec import AckStatus, Hello, decode_ack, decode_hello_reply, encode_batch, encode_hello
from agent.errors import CodecError
from collector.ingest.codec import decode_batch
from dealerpulse.model import (
    AgentCounters,
    EndpointStat,
    Gap,
    LatencySketch,
    MetricBatch,
    Sample,
    labels_of,
)
from dealerpulse.v1 import ingest_pb2 as pb

text = st.text(max_size=20)
int64 = st.integers(-(2**63), 2**63 - 1)
uint64 = st.integers(0, 2**64 - 1)
small = st.integers(0, 2**40)
finite = st.floats(allow_nan=False)
labels = st.dictionaries(text, text, max_size=4).map(labels_of)

samples = st.builds(Sample, name=text, value=finite, unit=text, time_ms=int64, labels=labels)
sketches = st.builds(
    LatencySketch,
    relative_accuracy=finite,
    offset=st.integers(-(2**31), 2**31 - 1),
    bin_counts=st.lists(uint64, max_size=5).map(tuple),
    zero_count=uint64,
)
endpoints = st.builds(
    EndpointStat,
    route=text,
    method=text,
    start_ms=int64,
    end_ms=int64,
    count=uint64,
    errors=uint64,
    client_errors=uint64,
    duration_sum_ms=finite,
    duration_min_ms=finite,
    duration_max_ms=finite,
    status_counts=st.dictionaries(st.integers(0, 2**32 - 1), uint64, max_size=3).map(
        lambda d: tuple(sorted(d.items()))
    ),
    last_error=text,
    last_error_ms=int64,
    latency=st.none() | sketches,
    source=text,
)
gaps = st.builds(
    Gap,
    first_seq=uint64,
    last_seq=uint64,
    from_ms=int64,
    to_ms=int64,
    batches=uint64,
    samples=uint64,
    reason=text,
)
counters = st.builds(
    AgentCounters,
    generated_samples=uint64,
    dropped_samples=st.dictionaries(text, uint64, max_size=3).map(
        lambda d: tuple(sorted(d.items()))
    ),
    spool_bytes=uint64,
    spool_batches=uint64,
)
batches = st.builds(
    MetricBatch,
    agent_id=text,
    dealer_id=text,
    seq=uint64,
    boot_id=text,
    hostname=text,
    agent_version=text,
    created_ms=int64,
    samples=st.lists(samples, max_size=5).map(tuple),
    endpoints=st.lists(endpoints, max_size=3).map(tuple),
    gaps=st.lists(gaps, max_size=2).map(tuple),
    counters=counters,
)


def _as_model(message: pb.Batch) -> MetricBatch:
    """What the collector makes of the bytes: the round trip is the real contract."""
    return dataclasses.replace(decode_batch(message).batch, digest=b"")


@given(batches)
def test_batch_round_trips_through_the_generated_class(batch: MetricBatch) -> None:
    decoded = pb.Batch.FromString(encode_batch(batch))
    assert _as_model(decoded) == batch


def _one_entry_maps(batch: MetricBatch) -> MetricBatch:
    return dataclasses.replace(
        batch,
        samples=tuple(s._replace(labels=s.labels[:1]) for s in batch.samples),
        endpoints=tuple(
            dataclasses.replace(e, status_counts=e.status_counts[:1]) for e in batch.endpoints
        ),
        counters=dataclasses.replace(
            batch.counters, dropped_samples=batch.counters.dropped_samples[:1]
        ),
    )


@given(batches, st.booleans())
def test_bytes_are_the_generated_classes_deterministic_serialization(
    batch: MetricBatch, columnar: bool
) -> None:
    # The spool stores these bytes and resends them: they must be the canonical
    # (deterministic) encoding, in both sample forms, so that a resend hashes
    # the same at the collector.
    batch = _one_entry_maps(batch)
    ours = encode_batch(batch, columnar=columnar)
    assert pb.Batch.FromString(ours).SerializeToString(deterministic=True) == ours


@given(batches)
def test_columns_carry_the_same_samples_as_rows(batch: MetricBatch) -> None:
    decoded = pb.Batch.FromString(encode_batch(batch, columnar=True))
    assert _as_model(decoded) == batch
    assert not decoded.samples and decoded.HasField("sample_columns") == bool(batch.samples)


@given(batches)
def test_encoding_is_deterministic(batch: MetricBatch) -> None:
    assert encode_batch(batch) == encode_batch(batch)


def test_label_order_does_not_change_the_bytes() -> None:
    one = Sample("cpu.percent", 1.0, "percent", 5, (("a", "1"), ("b", "2")))
    other = Sample("cpu.percent", 1.0, "percent", 5, (("b", "2"), ("a", "1")))
    first = encode_batch(MetricBatch("a", "d", 1, "b", "h", "v", 5, samples=(one,)))
    second = encode_batch(MetricBatch("a", "d", 1, "b", "h", "v", 5, samples=(other,)))
    assert first == second


def test_bad_field_is_named() -> None:
    stat = EndpointStat("/x", "GET", 0, 1, count=-1)
    batch = MetricBatch("a", "d", 1, "b", "h", "v", 5, endpoints=(stat,))
    with pytest.raises(CodecError, match=r"endpoints\[0\]"):
        encode_batch(batch)
    with pytest.raises(CodecError, match="seq"):
        encode_batch(MetricBatch("a", "d", -5, "b", "h", "v", 5))


def test_ack_decodes_every_field() -> None:
    message = pb.Ack(
        seq=7,
        status=pb.Ack.REJECTED,
        code=3,
        field="samples[2].value",
        message="NaN",
        retry_after_ms=0,
        samples_stored=0,
    )
    ack = decode_ack(message.SerializeToString())
    assert (ack.seq, ack.status, ack.code, ack.field, ack.message) == (
        7,
        AckStatus.REJECTED,
        3,
        "samples[2].value",
        "NaN",
    )


def test_unknown_ack_status_is_kept_as_unspecified_not_an_error() -> None:
    data = pb.Ack(seq=1, status=pb.Ack.STORED).SerializeToString()
    # Field 2 (status) as varint 9: a status this agent does not know.
    data = data.replace(b"\x10\x01", b"\x10\x09")
    assert decode_ack(data).status is AckStatus.UNSPECIFIED


@given(
    st.builds(
        pb.Ack,
        seq=uint64,
        status=st.integers(0, 6),
        code=st.integers(-(2**31), 2**31 - 1),
        field=text,
        message=text,
        retry_after_ms=int64,
        samples_stored=uint64,
    )
)
def test_any_ack_decodes_as_the_generated_class_reads_it(message: pb.Ack) -> None:
    ack = decode_ack(message.SerializeToString() + b"\xa0\x06\x01")  # + unknown field 100
    status = message.status if message.status <= 4 else 0
    assert (ack.seq, ack.status.value, ack.code, ack.field, ack.message) == (
        message.seq,
        status,
        message.code,
        message.field,
        message.message,
    )
    assert (ack.retry_after_ms, ack.samples_stored) == (
        max(0, message.retry_after_ms),
        message.samples_stored,
    )


def test_garbage_reply_raises_codec_error() -> None:
    with pytest.raises(CodecError, match="undecodable Ack"):
        decode_ack(b"\xff\xff\xff")


def test_hello_round_trip() -> None:
    request = pb.HelloRequest.FromString(encode_hello(Hello("a1", "host", "0.1.0", "boot")))
    assert (request.agent_id, request.hostname, request.agent_version, request.boot_id) == (
        "a1",
        "host",
        "0.1.0",
        "boot",
    )
    reply = pb.HelloResponse(
        dealer_id="acme", dealer_name="Acme", last_committed_seq=4, server_time_unix_ms=99
    )
    decoded = decode_hello_reply(reply.SerializeToString())
    assert (decoded.dealer_id, decoded.last_committed_seq, decoded.server_time_ms) == (
        "acme",
        4,
        99,
    )
