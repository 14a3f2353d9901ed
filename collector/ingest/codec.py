"""The only collector module that touches the ingest protobuf types.

Wire messages become the shared frozen dataclasses of :mod:`dealerpulse.model`
on the way in, and results become :class:`Ack` messages on the way out.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import grpc

from collector.abc import AgentInfo
from dealerpulse.columns import SampleTable
from dealerpulse.model import (
    AgentCounters,
    EndpointStat,
    Gap,
    Labels,
    LatencySketch,
    MetricBatch,
    Sample,
    WriteOutcome,
    WriteResult,
)
from dealerpulse.v1 import ingest_pb2 as pb


@dataclass(frozen=True, slots=True)
class DecodedBatch:
    """A batch as the collector sees it, with the size it had on the wire.

    ``batch.samples`` holds the row-form samples first, then those of
    ``sample_columns``; ``row_samples`` says where the columns' part begins,
    so that a problem can be named by its field on the wire.
    """

    batch: MetricBatch
    encoded_bytes: int
    row_samples: int


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a batch is refused for good: the gRPC code, the offending field, a message."""

    code: grpc.StatusCode
    field: str
    message: str


class ColumnsInvalid(Exception):
    """``sample_columns`` is inconsistent (columns of unequal length, an index
    out of its dictionary): the batch is refused before anything is stored."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.rejection = Rejection(grpc.StatusCode.INVALID_ARGUMENT, field, f"{field}: {message}")


def batch_header(message: pb.Batch) -> MetricBatch:
    """Who sent the batch and when, without its contents (also for a batch that cannot be
    decoded, so that its rejection can name the sender)."""
    return MetricBatch(
        agent_id=message.agent_id,
        dealer_id=message.dealer_id,
        seq=message.seq,
        boot_id=message.boot_id,
        hostname=message.hostname,
        agent_version=message.agent_version,
        created_ms=message.created_unix_ms,
    )


def decode_batch(message: pb.Batch) -> DecodedBatch:
    """The batch in the model's terms. Raises ColumnsInvalid."""
    # The digest covers the deterministic encoding so that an honest resend of
    # the same content hashes the same, whatever the map order on the wire.
    encoded = message.SerializeToString(deterministic=True)
    samples: Sequence[Sample] = tuple(_decode_samples(message.samples))
    row_samples = len(samples)
    if message.HasField("sample_columns"):
        table = _decode_columns(message.sample_columns)
        # Columns alone stay columns (the writer's fast path); a batch with
        # both forms is rare and becomes rows, the row form first.
        samples = (*samples, *table) if samples else table
    batch = dataclasses.replace(
        batch_header(message),
        samples=samples,
        endpoints=tuple(_decode_endpoint(e) for e in message.endpoints),
        gaps=tuple(_decode_gap(g) for g in message.gaps),
        counters=_decode_counters(message.counters),
        digest=hashlib.sha256(encoded).digest(),
    )
    return DecodedBatch(batch=batch, encoded_bytes=len(encoded), row_samples=row_samples)


# Sample is a NamedTuple whose generated __new__ is Python code; the tuple
# constructor called directly builds the same object in a fraction of the time.
_new_tuple = tuple.__new__


def _decode_samples(messages: Iterable[pb.Sample]) -> list[Sample]:
    # The hot loop of the row form: one upb attribute read per field, no
    # helper call beyond the labels.
    return [
        _new_tuple(Sample, (m.name, m.value, m.unit, m.time_unix_ms, _labels(m.labels)))
        for m in messages
    ]


def _decode_columns(columns: pb.SampleColumns) -> SampleTable:
    """The columns, checked and kept as columns: no Python code per sample."""
    names = tuple(columns.names)
    units = tuple(columns.units)
    label_sets = tuple(_labels(entry.labels) for entry in columns.label_sets)
    values = tuple(columns.values)
    times = tuple(columns.time_unix_ms)
    name_index = _index_column("name_index", columns.name_index, len(values), names, "names")
    unit_index = _index_column("unit_index", columns.unit_index, len(values), units, "units")
    labels_index = _index_column(
        "labels_index", columns.labels_index, len(values), label_sets, "label_sets"
    )
    if len(times) != len(values):
        raise ColumnsInvalid(
            "sample_columns.time_unix_ms",
            f"{len(times)} entries; must have one per value ({len(values)})",
        )
    return SampleTable(
        names=names,
        units=units,
        label_sets=label_sets,
        name_index=name_index,
        unit_index=unit_index,
        labels_index=labels_index,
        values=values,
        times=times,
    )


def _index_column(
    column: str, index: Sequence[int], count: int, dictionary: Sequence[object], of: str
) -> tuple[int, ...]:
    """A per-sample index column, checked: one entry per value, each inside its dictionary."""
    entries = tuple(index)
    field = f"sample_columns.{column}"
    if len(entries) != count:
        raise ColumnsInvalid(field, f"{len(entries)} entries; must have one per value ({count})")
    if entries and max(entries) >= len(dictionary):
        position = next(i for i, entry in enumerate(entries) if entry >= len(dictionary))
        raise ColumnsInvalid(
            f"{field}[{position}]",
            f"{entries[position]} is out of range: sample_columns.{of} has "
            f"{len(dictionary)} entries",
        )
    return entries


def _labels(labels: Mapping[str, str]) -> Labels:
    """The map as sorted pairs. upb's map.items() is the slow pure-Python
    Mapping mixin, so read it by key; most samples have 0 or 1 label."""
    if not labels:
        return ()
    if len(labels) == 1:
        for key in labels:
            return ((key, labels[key]),)
    return tuple(sorted([(key, labels[key]) for key in labels]))


def _decode_endpoint(message: pb.EndpointStats) -> EndpointStat:
    latency = _decode_sketch(message.latency) if message.HasField("latency") else None
    return EndpointStat(
        route=message.route,
        method=message.method,
        start_ms=message.start_unix_ms,
        end_ms=message.end_unix_ms,
        count=message.count,
        errors=message.errors,
        client_errors=message.client_errors,
        duration_sum_ms=message.duration_sum_ms,
        duration_min_ms=message.duration_min_ms,
        duration_max_ms=message.duration_max_ms,
        status_counts=tuple(sorted(message.status_counts.items())),
        last_error=message.last_error,
        last_error_ms=message.last_error_unix_ms,
        latency=latency,
        source=message.source,
    )


def _decode_sketch(message: pb.LatencySketch) -> LatencySketch:
    return LatencySketch(
        relative_accuracy=message.relative_accuracy,
        offset=message.offset,
        bin_counts=tuple(message.bin_counts),
        zero_count=message.zero_count,
    )


def _decode_gap(message: pb.Gap) -> Gap:
    return Gap(
        first_seq=message.first_seq,
        last_seq=message.last_seq,
        from_ms=message.from_unix_ms,
        to_ms=message.to_unix_ms,
        batches=message.batches,
        samples=message.samples,
        reason=message.reason,
    )


def _decode_counters(message: pb.AgentCounters) -> AgentCounters:
    return AgentCounters(
        generated_samples=message.generated_samples,
        dropped_samples=tuple(sorted(message.dropped_samples.items())),
        spool_bytes=message.spool_bytes,
        spool_batches=message.spool_batches,
    )


def decode_hello(message: pb.HelloRequest, dealer_id: str) -> AgentInfo:
    """The agent's self-description; the dealer comes from its token, never from the request."""
    return AgentInfo(
        agent_id=message.agent_id,
        dealer_id=dealer_id,
        hostname=message.hostname,
        version=message.agent_version,
        boot_id=message.boot_id,
    )


def encode_hello_response(
    dealer_id: str, dealer_name: str, last_committed_seq: int, server_time_ms: int
) -> pb.HelloResponse:
    return pb.HelloResponse(
        dealer_id=dealer_id,
        dealer_name=dealer_name,
        last_committed_seq=last_committed_seq,
        server_time_unix_ms=server_time_ms,
        accepts_sample_columns=True,
    )


def encode_write_result(seq: int, result: WriteResult) -> pb.Ack:
    if result.outcome is WriteOutcome.STORED:
        return pb.Ack(seq=seq, status=pb.Ack.STORED, samples_stored=result.samples_stored)
    if result.outcome is WriteOutcome.DUPLICATE:
        return pb.Ack(seq=seq, status=pb.Ack.DUPLICATE)
    return encode_rejection(seq, conflict_rejection(seq))


def encode_partly_stored(seq: int, result: WriteResult, refusal: Rejection) -> pb.Ack:
    """STORED, with code/field/message saying which samples were left out and why."""
    return pb.Ack(
        seq=seq,
        status=pb.Ack.STORED,
        samples_stored=result.samples_stored,
        code=_code_number(refusal.code),
        field=refusal.field,
        message=refusal.message,
    )


def conflict_rejection(seq: int) -> Rejection:
    return Rejection(
        grpc.StatusCode.INVALID_ARGUMENT,
        "seq",
        f"seq {seq} was already stored with different content",
    )


def encode_rejection(seq: int, rejection: Rejection) -> pb.Ack:
    return pb.Ack(
        seq=seq,
        status=pb.Ack.REJECTED,
        code=_code_number(rejection.code),
        field=rejection.field,
        message=rejection.message,
    )


def encode_retry(seq: int, code: grpc.StatusCode, message: str, retry_after_s: float) -> pb.Ack:
    return pb.Ack(
        seq=seq,
        status=pb.Ack.RETRY,
        code=_code_number(code),
        message=message,
        retry_after_ms=max(1, round(retry_after_s * 1000)),
    )


def _code_number(code: grpc.StatusCode) -> int:
    # StatusCode values are (number, name) pairs; the wire carries the number.
    number: int = code.value[0]
    return number
