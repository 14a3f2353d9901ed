"""Batches for the ingest tests: builders, the agent's encoder, strategies, corruptions.

The corruption table is shared by the validation property tests and the
end-to-end stream tests, so every rule is exercised both ways.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass

import grpc
from hypothesis import strategies as st

from agent.codec import encode_batch
from collector.ingest.validate import DAY_S, Limits
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

INVALID = grpc.StatusCode.INVALID_ARGUMENT


def encode(batch: MetricBatch) -> pb.Batch:
    """The wire form of a model batch: exactly what the agent's encoder sends."""
    return pb.Batch.FromString(encode_batch(batch))


# ---- plain builders


def sample(now_ms: int, name: str = "cpu.percent", value: float = 12.5, **labels: str) -> Sample:
    return Sample(name, value, "percent", now_ms, labels_of(**labels))


def endpoint(now_ms: int, count: int = 10, errors: int = 1) -> EndpointStat:
    return EndpointStat(
        route="/api/vehicles/{id}",
        method="GET",
        start_ms=now_ms - 10_000,
        end_ms=now_ms,
        count=count,
        errors=errors,
        client_errors=0,
        duration_sum_ms=120.0,
        duration_min_ms=2.0,
        duration_max_ms=40.0,
        status_counts=((200, count - errors), (500, errors)),
        latency=LatencySketch(0.01, 10, (1, 2, 3)),
        source="middleware",
    )


def good_batch(
    dealer_id: str, agent_id: str, seq: int, now_ms: int, n_samples: int = 3
) -> MetricBatch:
    return MetricBatch(
        agent_id=agent_id,
        dealer_id=dealer_id,
        seq=seq,
        boot_id="boot-1",
        hostname="dms-01",
        agent_version="0.1.0",
        created_ms=now_ms,
        samples=tuple(sample(now_ms, core=str(i)) for i in range(n_samples)),
        endpoints=(endpoint(now_ms),),
        gaps=(Gap(1, 1, now_ms - 60_000, now_ms - 50_000, 1, 3, "spool_full"),),
        counters=AgentCounters(100, (("spool_full", 3),), 2048, 1),
    )


# ---- hypothesis strategies: batches that every rule accepts

NAME_HEAD = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_"
NAME_TAIL = NAME_HEAD + "0123456789.:-"
KEY_TAIL = NAME_HEAD + "0123456789.-"
SAFE_TEXT = st.characters(blacklist_categories=("Cc", "Cs"))
# Error messages may hold line breaks and tabs, never NUL.
MULTILINE_TEXT = st.characters(codec="utf-8", exclude_characters="\x00")


def _identifier(tail: str, max_size: int) -> st.SearchStrategy[str]:
    return st.builds(
        lambda head, rest: head + rest,
        st.sampled_from(NAME_HEAD),
        st.text(st.sampled_from(tail), max_size=max_size - 1),
    )


metric_names = _identifier(NAME_TAIL, 40)
label_sets = st.dictionaries(
    _identifier(KEY_TAIL, 20), st.text(SAFE_TEXT, max_size=40), max_size=4
).map(labels_of)
finite = st.floats(allow_nan=False, allow_infinity=False)
units = st.text(SAFE_TEXT, max_size=8)
int64s = st.integers(0, 2**63 - 1)


@st.composite
def valid_batches(draw: st.DrawFn, now_ms: int, limits: Limits) -> MetricBatch:
    # Keep a second's margin from every time limit.
    oldest = now_ms - int(limits.retention_s * 1000) + 1000
    newest = now_ms + int(limits.max_future_s * 1000) - 1000
    times = st.integers(oldest, newest)
    samples = draw(
        st.lists(
            st.builds(Sample, metric_names, finite, units, times, label_sets),
            max_size=12,
            unique_by=lambda s: (s.name, s.labels, s.time_ms),
        )
    )
    endpoints = draw(st.lists(_endpoints(oldest, newest), max_size=3))
    gaps = draw(st.lists(_gaps(now_ms), max_size=2))
    return MetricBatch(
        agent_id=draw(st.text(SAFE_TEXT, min_size=1, max_size=30)),
        dealer_id="sunrise-motors",
        seq=draw(st.integers(1, 2**63 - 1)),
        boot_id=draw(st.text(SAFE_TEXT, max_size=12)),
        hostname=draw(st.text(SAFE_TEXT, max_size=20)),
        agent_version=draw(st.text(SAFE_TEXT, max_size=8)),
        created_ms=draw(st.integers(0, newest)),
        samples=tuple(samples),
        endpoints=tuple(endpoints),
        gaps=tuple(gaps),
        counters=AgentCounters(draw(int64s), (("spool_full", draw(int64s)),), 0, 0),
    )


@st.composite
def _endpoints(draw: st.DrawFn, oldest: int, newest: int) -> EndpointStat:
    start = draw(st.integers(oldest, newest))
    count = draw(st.integers(0, 10**9))
    low, high = sorted(draw(st.lists(st.floats(0, 1e6), min_size=2, max_size=2)))
    sketch = st.builds(
        LatencySketch,
        st.floats(0.001, 0.5),
        st.integers(-1000, 1000),
        st.lists(st.integers(0, 10**6), max_size=5).map(tuple),
        st.integers(0, 10**6),
    )
    return EndpointStat(
        route="/" + draw(st.text(SAFE_TEXT, min_size=1, max_size=30)),
        method=draw(st.sampled_from(["GET", "POST", "PUT", "DELETE"])),
        start_ms=start,
        end_ms=draw(st.integers(start, newest)),
        count=count,
        errors=draw(st.integers(0, count)),
        client_errors=draw(st.integers(0, count)),
        duration_sum_ms=draw(st.floats(0, 1e12)),
        duration_min_ms=low,
        duration_max_ms=high,
        status_counts=tuple(sorted(draw(st.dictionaries(st.integers(100, 599), int64s)).items())),
        last_error=draw(st.text(MULTILINE_TEXT, max_size=50)),
        latency=draw(st.none() | sketch),
        source=draw(st.sampled_from(["", "middleware", "otlp", "probe"])),
    )


@st.composite
def _gaps(draw: st.DrawFn, now_ms: int) -> Gap:
    first = draw(st.integers(1, 10**12))
    start = draw(st.integers(0, now_ms))
    return Gap(
        first_seq=first,
        last_seq=draw(st.integers(first, 2**63 - 1)),
        from_ms=start,
        to_ms=draw(st.integers(start, now_ms)),
        batches=draw(st.integers(0, 10**9)),
        samples=draw(st.integers(0, 10**12)),
        reason=draw(st.sampled_from(["spool_full", "rejected"])),
    )


# ---- corruptions: one bad field each, and what the collector must answer


@dataclass(frozen=True)
class Corruption:
    """Spoils one field of a batch that has at least one sample and one endpoint."""

    name: str
    field: str
    spoil: Callable[[MetricBatch, int, Limits], MetricBatch]
    code: grpc.StatusCode = INVALID


def _with_sample(batch: MetricBatch, **changes: object) -> MetricBatch:
    first = batch.samples[0]._replace(**changes)  # type: ignore[arg-type]
    return dataclasses.replace(batch, samples=(first, *batch.samples[1:]))


def _with_endpoint(batch: MetricBatch, **changes: object) -> MetricBatch:
    first = dataclasses.replace(batch.endpoints[0], **changes)  # type: ignore[arg-type]
    return dataclasses.replace(batch, endpoints=(first, *batch.endpoints[1:]))


def _with_labels(batch: MetricBatch, **labels: str) -> MetricBatch:
    return _with_sample(batch, labels=labels_of(dict(batch.samples[0].labels), **labels))


def _with_duplicate(batch: MetricBatch) -> MetricBatch:
    return dataclasses.replace(batch, samples=(*batch.samples, batch.samples[0]))


def _future(now_ms: int, limits: Limits) -> int:
    return now_ms + int(limits.max_future_s * 1000) + 60_000


def _too_old(now_ms: int, limits: Limits) -> int:
    return now_ms - int(limits.retention_s * 1000) - DAY_S * 1000


def _too_many_samples(batch: MetricBatch, now_ms: int, limits: Limits) -> MetricBatch:
    extra = tuple(
        Sample("load.avg", 1.0, "", now_ms, (("i", str(i)),)) for i in range(limits.max_samples)
    )
    return dataclasses.replace(batch, samples=(*batch.samples, *extra))


CORRUPTIONS: list[Corruption] = [
    Corruption("nan", "samples[0].value", lambda b, n, lim: _with_sample(b, value=math.nan)),
    Corruption("inf", "samples[0].value", lambda b, n, lim: _with_sample(b, value=math.inf)),
    Corruption("-inf", "samples[0].value", lambda b, n, lim: _with_sample(b, value=-math.inf)),
    Corruption("empty name", "samples[0].name", lambda b, n, lim: _with_sample(b, name="")),
    Corruption(
        "long name",
        "samples[0].name",
        lambda b, n, lim: _with_sample(b, name="m" * (lim.max_name_len + 1)),
    ),
    Corruption("name digit", "samples[0].name", lambda b, n, lim: _with_sample(b, name="1cpu")),
    Corruption("name space", "samples[0].name", lambda b, n, lim: _with_sample(b, name="cpu pct")),
    Corruption(
        "long unit",
        "samples[0].unit",
        lambda b, n, lim: _with_sample(b, unit="u" * (lim.max_unit_len + 1)),
    ),
    Corruption(
        "future time",
        "samples[0].time_unix_ms",
        lambda b, n, lim: _with_sample(b, time_ms=_future(n, lim)),
    ),
    Corruption(
        "too old",
        "samples[0].time_unix_ms",
        lambda b, n, lim: _with_sample(b, time_ms=_too_old(n, lim)),
    ),
    Corruption(
        "too many labels",
        "samples[0].labels",
        lambda b, n, lim: _with_sample(
            b, labels=labels_of({f"k{i}": "v" for i in range(lim.max_labels + 1)})
        ),
    ),
    Corruption(
        "bad label key",
        "samples[0].labels['9lives']",
        lambda b, n, lim: _with_labels(b, **{"9lives": "x"}),
    ),
    Corruption(
        "long label value",
        "samples[0].labels['zz']",
        lambda b, n, lim: _with_labels(b, zz="v" * (lim.max_label_value_len + 1)),
    ),
    Corruption(
        "NUL in label", "samples[0].labels['zz']", lambda b, n, lim: _with_labels(b, zz="a\0")
    ),
    Corruption("empty agent_id", "agent_id", lambda b, n, lim: dataclasses.replace(b, agent_id="")),
    Corruption("seq 0", "seq", lambda b, n, lim: dataclasses.replace(b, seq=0)),
    Corruption("seq above int64", "seq", lambda b, n, lim: dataclasses.replace(b, seq=2**63)),
    Corruption("too many samples", "batch", _too_many_samples),
    Corruption(
        "duplicate series and time",
        "samples[-1]",  # resolved by the tests to the appended copy's index
        lambda b, n, lim: _with_duplicate(b),
    ),
    Corruption(
        "errors above count",
        "endpoints[0].errors",
        lambda b, n, lim: _with_endpoint(b, count=1, errors=2, client_errors=0),
    ),
    Corruption(
        "negative duration",
        "endpoints[0].duration_min_ms",
        lambda b, n, lim: _with_endpoint(b, duration_min_ms=-1.0),
    ),
    Corruption(
        "nan duration",
        "endpoints[0].duration_sum_ms",
        lambda b, n, lim: _with_endpoint(b, duration_sum_ms=math.nan),
    ),
    Corruption(
        "endpoint ends before it starts",
        "endpoints[0].end_unix_ms",
        lambda b, n, lim: _with_endpoint(
            b, start_ms=b.endpoints[0].end_ms, end_ms=b.endpoints[0].end_ms - 1
        ),
    ),
]


def expected_field(corruption: Corruption, spoiled: MetricBatch) -> str:
    if corruption.field == "samples[-1]":
        return f"samples[{len(spoiled.samples) - 1}]"
    return corruption.field
