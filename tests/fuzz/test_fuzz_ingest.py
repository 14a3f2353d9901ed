"""Fuzzing Ingest.Hello and Ingest.Stream over real gRPC against a real collector.

Inputs: raw bytes in place of a message, and well-formed Batch messages with
one to three fields set to arbitrary values. For every input:

- the collector answers with a clear status: an ack REJECTED with
  INVALID_ARGUMENT/PERMISSION_DENIED and a field that the message names, or
  the stream ended INVALID_ARGUMENT -- never INTERNAL or UNKNOWN;
- nothing of a refused request is stored (row counts of every ingest table
  are unchanged), and what is stored is exactly the batch's samples;
- the collector still stores a good batch afterwards.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dealerpulse.v1 import ingest_pb2 as pb

from .live_collector import LiveCollector, live_collector

STREAM = "/dealerpulse.v1.Ingest/Stream"
HELLO = "/dealerpulse.v1.Ingest/Hello"
CLEAR_REFUSALS = {
    grpc.StatusCode.INVALID_ARGUMENT.value[0],
    grpc.StatusCode.PERMISSION_DENIED.value[0],
}
SERVER_ERRORS = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}
RPC_TIMEOUT_S = 20.0
FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
INT64 = st.integers(-(2**63), 2**63 - 1)
UINT64 = st.integers(0, 2**64 - 1)
ANY_FLOAT = st.floats(allow_nan=True, allow_infinity=True)
SHORT_TEXT = st.text(max_size=40)
LONG_TEXT = st.one_of(st.text(max_size=80), st.text(min_size=190, max_size=300))
_agents = itertools.count()
# Inputs sent per test, for the report (pytest -s prints them).
tried: dict[str, int] = {}


@pytest.fixture(scope="module")
def collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveCollector]:
    with live_collector(Path(tmp_path_factory.mktemp("fuzz-ingest"))) as live:
        yield live
    print(f"\ningest fuzz inputs tried: {tried}")


def count(name: str) -> None:
    tried[name] = tried.get(name, 0) + 1


# ---- a good batch, and mutations that make it (probably) wrong


def good_batch(live: LiveCollector, samples: int = 3) -> pb.Batch:
    now_ms = int(time.time() * 1000)
    batch = pb.Batch(
        agent_id=f"fuzz-agent-{next(_agents)}",
        dealer_id=live.dealer_id,
        seq=1,
        boot_id="boot",
        hostname="host-1",
        agent_version="1.0",
        created_unix_ms=now_ms,
    )
    for i in range(samples):
        batch.samples.add(
            name=f"cpu.m{i}",
            value=1.5 * i,
            unit="percent",
            time_unix_ms=now_ms,
            labels={"core": "0"},
        )
    stat = batch.endpoints.add(
        route="/api/vehicles/{id}",
        method="GET",
        start_unix_ms=now_ms - 10_000,
        end_unix_ms=now_ms,
        count=10,
        errors=1,
        duration_sum_ms=100.0,
        duration_min_ms=1.0,
        duration_max_ms=40.0,
        source="middleware",
    )
    stat.status_counts[200] = 9
    stat.status_counts[500] = 1
    stat.latency.relative_accuracy = 0.01
    stat.latency.bin_counts.extend([1, 2, 3])
    batch.counters.generated_samples = samples + 1
    return batch


Mutation = Callable[[pb.Batch], None]


def _set(path: str, value: Any) -> Mutation:
    """Set a dotted field (``samples.0.value``); a missing repeated element is added."""

    def apply(batch: pb.Batch) -> None:
        *parents, last = path.split(".")
        target: Any = batch
        for part in parents:
            if part.isdigit():
                while len(target) <= int(part):
                    target.add()
                target = target[int(part)]
            else:
                target = getattr(target, part)
        setattr(target, last, value)

    return apply


def _map(path: str, entries: dict[Any, Any]) -> Mutation:
    def apply(batch: pb.Batch) -> None:
        target: Any = batch
        for part in path.split("."):
            target = target[int(part)] if part.isdigit() else getattr(target, part)
        target.clear()
        target.update(entries)

    return apply


def _duplicate_sample(batch: pb.Batch) -> None:
    batch.samples.add().CopyFrom(batch.samples[0])


def _many_samples(n: int) -> Mutation:
    def apply(batch: pb.Batch) -> None:
        first = batch.samples[0]
        for i in range(n):
            batch.samples.add(
                name=f"bulk.m{i}", value=1.0, unit="u", time_unix_ms=first.time_unix_ms
            )

    return apply


def _time_from_now(path: str, offset_s: int) -> Mutation:
    def apply(batch: pb.Batch) -> None:
        _set(path, int(time.time() * 1000) + offset_s * 1000)(batch)

    return apply


NEAR_NOW_S = st.integers(-40 * 86_400, 4 * 3_600)
mutations: st.SearchStrategy[Mutation] = st.one_of(
    st.builds(_set, st.just("agent_id"), LONG_TEXT),
    st.builds(_set, st.just("dealer_id"), SHORT_TEXT),
    st.builds(_set, st.just("seq"), UINT64),
    st.builds(_set, st.sampled_from(["boot_id", "hostname", "agent_version"]), LONG_TEXT),
    st.builds(_set, st.just("created_unix_ms"), INT64),
    st.builds(_set, st.just("samples.0.name"), LONG_TEXT),
    st.builds(_set, st.just("samples.1.value"), ANY_FLOAT),
    st.builds(_set, st.just("samples.2.unit"), SHORT_TEXT),
    st.builds(_set, st.just("samples.0.time_unix_ms"), INT64),
    st.builds(_time_from_now, st.just("samples.1.time_unix_ms"), NEAR_NOW_S),
    st.builds(
        _map,
        st.just("samples.0.labels"),
        st.dictionaries(LONG_TEXT, LONG_TEXT, max_size=40),
    ),
    st.just(_duplicate_sample),
    st.builds(_many_samples, st.sampled_from([1, 9_998, 10_001])),
    st.builds(_set, st.sampled_from(["endpoints.0.route", "endpoints.0.method"]), LONG_TEXT),
    st.builds(_set, st.just("endpoints.0.last_error"), st.text(max_size=5_000)),
    st.builds(_set, st.just("endpoints.0.source"), SHORT_TEXT),
    st.builds(
        _set, st.sampled_from(["endpoints.0.start_unix_ms", "endpoints.0.end_unix_ms"]), INT64
    ),
    st.builds(
        _set,
        st.sampled_from(["endpoints.0.count", "endpoints.0.errors", "endpoints.0.client_errors"]),
        UINT64,
    ),
    st.builds(
        _set,
        st.sampled_from(
            [
                "endpoints.0.duration_sum_ms",
                "endpoints.0.duration_min_ms",
                "endpoints.0.duration_max_ms",
            ]
        ),
        ANY_FLOAT,
    ),
    st.builds(
        _map,
        st.just("endpoints.0.status_counts"),
        st.dictionaries(st.integers(0, 2**32 - 1), UINT64, max_size=5),
    ),
    st.builds(_set, st.just("endpoints.0.latency.relative_accuracy"), ANY_FLOAT),
    st.builds(_set, st.just("endpoints.0.latency.zero_count"), UINT64),
    st.builds(
        _set,
        st.sampled_from(
            ["gaps.0.first_seq", "gaps.0.last_seq", "gaps.0.batches", "gaps.0.samples"]
        ),
        UINT64,
    ),
    st.builds(_set, st.sampled_from(["gaps.0.from_unix_ms", "gaps.0.to_unix_ms"]), INT64),
    st.builds(_set, st.just("gaps.0.reason"), SHORT_TEXT),
    st.builds(
        _set,
        st.sampled_from(
            ["counters.generated_samples", "counters.spool_bytes", "counters.spool_batches"]
        ),
        UINT64,
    ),
    st.builds(
        _map, st.just("counters.dropped_samples"), st.dictionaries(LONG_TEXT, UINT64, max_size=3)
    ),
)


# ---- talking to the collector


def stream_once(live: LiveCollector, payload: bytes) -> tuple[list[pb.Ack], grpc.StatusCode]:
    """Send one raw message on a new stream; the acks and how the stream ended."""
    call = live.channel.stream_stream(STREAM, request_serializer=None, response_deserializer=None)
    acks: list[pb.Ack] = []
    try:
        for raw in call(iter([payload]), metadata=live.metadata, timeout=RPC_TIMEOUT_S):
            acks.append(pb.Ack.FromString(raw))
    except grpc.RpcError as ended:
        return acks, ended.code()
    return acks, grpc.StatusCode.OK


def assert_still_serves(live: LiveCollector) -> None:
    before = live.row_counts()["samples"]
    acks, code = stream_once(live, good_batch(live).SerializeToString())
    assert code is grpc.StatusCode.OK
    assert [a.status for a in acks] == [pb.Ack.STORED]
    assert live.row_counts()["samples"] == before + 3


def assert_clear_answer(
    acks: list[pb.Ack],
    code: grpc.StatusCode,
    before: dict[str, int],
    after: dict[str, int],
    sent_samples: int,
) -> None:
    assert code not in SERVER_ERRORS, code
    count(f"answer {code.name}/{pb.Ack.Status.Name(acks[0].status) if acks else '-'}")
    if code is not grpc.StatusCode.OK:
        # Only an undecodable message ends the stream; it stores nothing.
        assert code is grpc.StatusCode.INVALID_ARGUMENT
        assert acks == []
        assert after == before
        return
    [ack] = acks
    if ack.status == pb.Ack.REJECTED:
        assert ack.code in CLEAR_REFUSALS, ack
        assert ack.field, ack
        assert ack.field.split("[")[0] in ack.message, ack
        assert after == before, ack
    elif ack.status == pb.Ack.STORED:
        assert ack.samples_stored == sent_samples
        assert after["samples"] == before["samples"] + sent_samples
    else:
        # A reused (agent_id, seq) with the same content: nothing new.
        assert ack.status == pb.Ack.DUPLICATE, ack
        assert after["samples"] == before["samples"]


# ---- the properties


@FUZZ
@given(payload=st.binary(max_size=600))
def test_raw_bytes_on_the_stream_are_refused_cleanly(
    collector: LiveCollector, payload: bytes
) -> None:
    count("stream_raw_bytes")
    before = collector.row_counts()
    acks, code = stream_once(collector, payload)
    # Random bytes that happen to parse are a Batch of nobody's dealer: never stored.
    assert_clear_answer(acks, code, before, collector.row_counts(), sent_samples=-1)
    assert all(a.status == pb.Ack.REJECTED for a in acks)
    assert_still_serves(collector)


@FUZZ
@given(changes=st.lists(mutations, min_size=1, max_size=3))
def test_wrong_batches_are_refused_with_the_field_named(
    collector: LiveCollector, changes: list[Mutation]
) -> None:
    count("stream_wrong_batches")
    batch = good_batch(collector)
    for change in changes:
        change(batch)
    before = collector.row_counts()
    acks, code = stream_once(collector, batch.SerializeToString())
    assert_clear_answer(acks, code, before, collector.row_counts(), len(batch.samples))
    assert_still_serves(collector)


@FUZZ
@given(payload=st.binary(max_size=600))
def test_raw_bytes_as_hello_are_refused_cleanly(collector: LiveCollector, payload: bytes) -> None:
    count("hello_raw_bytes")
    before = collector.row_counts()
    hello = collector.channel.unary_unary(
        HELLO, request_serializer=None, response_deserializer=None
    )
    try:
        hello(payload, metadata=collector.metadata, timeout=RPC_TIMEOUT_S)
    except grpc.RpcError as refused:
        assert refused.code() in {
            grpc.StatusCode.INVALID_ARGUMENT,
            grpc.StatusCode.PERMISSION_DENIED,
        }, (refused.code(), refused.details())
        assert collector.row_counts() == before
    assert_still_serves(collector)
