"""The only agent module that touches protobuf: model dataclasses <-> wire bytes.

Batches are encoded deterministically (map entries sorted), so the same batch
always yields the same bytes; the spool stores those bytes and a resend is
byte-identical to the first send.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import TypeVar

from google.protobuf.message import DecodeError

from agent.errors import CodecError
from dealerpulse.model import (
    AgentCounters,
    EndpointStat,
    Gap,
    Labels,
    LatencySketch,
    MetricBatch,
    Sample,
)
from dealerpulse.v1 import ingest_pb2 as pb

logger = logging.getLogger(__name__)

_Item = TypeVar("_Item")
_INVALID_ARGUMENT = 3  # gRPC status code number
_Reply = TypeVar("_Reply", pb.Ack, pb.HelloResponse)

HELLO_METHOD = "/dealerpulse.v1.Ingest/Hello"
STREAM_METHOD = "/dealerpulse.v1.Ingest/Stream"


class AckStatus(Enum):
    UNSPECIFIED = 0
    STORED = 1
    DUPLICATE = 2
    REJECTED = 3
    RETRY = 4


@dataclass(frozen=True, slots=True)
class Ack:
    """The collector's answer to one batch."""

    seq: int
    status: AckStatus
    code: int = 0
    field: str = ""
    message: str = ""
    retry_after_ms: int = 0
    samples_stored: int = 0

    @property
    def is_seq_conflict(self) -> bool:
        """The collector already committed this (agent_id, seq) with other bytes."""
        # The collector's conflict rejection: INVALID_ARGUMENT on field "seq". The
        # only other "seq" rejection (seq < 1) cannot happen: spool seqs start at 1.
        return (
            self.status is AckStatus.REJECTED
            and self.code == _INVALID_ARGUMENT
            and self.field == "seq"
        )


@dataclass(frozen=True, slots=True)
class Hello:
    """What the agent tells the collector when it connects."""

    agent_id: str
    hostname: str
    agent_version: str
    boot_id: str


@dataclass(frozen=True, slots=True)
class HelloReply:
    dealer_id: str
    dealer_name: str
    last_committed_seq: int
    server_time_ms: int
    # The collector reads Batch.sample_columns (see encode_batch).
    accepts_sample_columns: bool = False


# ---- batches -> bytes


def encode_batch(batch: MetricBatch, *, columnar: bool = False) -> bytes:
    """The deterministic wire encoding of a batch; CodecError names a bad field.

    ``columnar`` puts the samples in ``sample_columns`` (far cheaper for the
    collector to decode); only for a collector whose Hello reply says it
    accepts them (:attr:`HelloReply.accepts_sample_columns`).
    """
    message = pb.Batch(
        agent_id=batch.agent_id,
        dealer_id=batch.dealer_id,
        seq=_checked(batch.seq, "seq"),
        boot_id=batch.boot_id,
        hostname=batch.hostname,
        agent_version=batch.agent_version,
        created_unix_ms=batch.created_ms,
        counters=_counters(batch.counters),
    )
    if columnar:
        _guarded("sample_columns", _add_columns, message, batch.samples)
    else:
        for index, sample in enumerate(batch.samples):
            _guarded(f"samples[{index}]", _add_sample, message, sample)
    for index, stat in enumerate(batch.endpoints):
        _guarded(f"endpoints[{index}]", _add_endpoint, message, stat)
    for index, gap in enumerate(batch.gaps):
        _guarded(f"gaps[{index}]", _add_gap, message, gap)
    return message.SerializeToString(deterministic=True)


def _guarded(
    where: str, add: Callable[[pb.Batch, _Item], None], message: pb.Batch, item: _Item
) -> None:
    try:
        add(message, item)
    except (ValueError, TypeError, OverflowError) as exc:
        raise CodecError(f"{where}: {exc}") from exc


def _checked(value: int, name: str) -> int:
    if value < 0:
        raise CodecError(f"{name}: must not be negative, got {value}")
    return value


def _add_sample(message: pb.Batch, sample: Sample) -> None:
    message.samples.add(
        name=sample.name,
        value=sample.value,
        unit=sample.unit,
        time_unix_ms=sample.time_ms,
        labels=dict(sample.labels),
    )


def _add_columns(message: pb.Batch, samples: Sequence[Sample]) -> None:
    """Samples as columns: each distinct name, unit and label set once, then per sample
    its indexes into those, its value and its time."""
    if not samples:
        return
    names: dict[str, int] = {}
    units: dict[str, int] = {}
    label_sets: dict[Labels, int] = {}
    columns = message.sample_columns
    columns.name_index.extend([names.setdefault(s.name, len(names)) for s in samples])
    columns.unit_index.extend([units.setdefault(s.unit, len(units)) for s in samples])
    columns.labels_index.extend([label_sets.setdefault(s.labels, len(label_sets)) for s in samples])
    columns.values.extend([s.value for s in samples])
    columns.time_unix_ms.extend([s.time_ms for s in samples])
    # Dicts keep insertion order: position i holds the entry numbered i.
    columns.names.extend(names)
    columns.units.extend(units)
    for labels in label_sets:
        columns.label_sets.add(labels=dict(labels))


def _add_endpoint(message: pb.Batch, stat: EndpointStat) -> None:
    entry = message.endpoints.add(
        route=stat.route,
        method=stat.method,
        start_unix_ms=stat.start_ms,
        end_unix_ms=stat.end_ms,
        count=stat.count,
        errors=stat.errors,
        client_errors=stat.client_errors,
        duration_sum_ms=stat.duration_sum_ms,
        duration_min_ms=stat.duration_min_ms,
        duration_max_ms=stat.duration_max_ms,
        status_counts=dict(stat.status_counts),
        last_error=stat.last_error,
        last_error_unix_ms=stat.last_error_ms,
        source=stat.source,
    )
    if stat.latency is not None:
        entry.latency.CopyFrom(_sketch(stat.latency))


def _sketch(sketch: LatencySketch) -> pb.LatencySketch:
    return pb.LatencySketch(
        relative_accuracy=sketch.relative_accuracy,
        offset=sketch.offset,
        bin_counts=sketch.bin_counts,
        zero_count=sketch.zero_count,
    )


def _add_gap(message: pb.Batch, gap: Gap) -> None:
    message.gaps.add(
        first_seq=gap.first_seq,
        last_seq=gap.last_seq,
        from_unix_ms=gap.from_ms,
        to_unix_ms=gap.to_ms,
        batches=gap.batches,
        samples=gap.samples,
        reason=gap.reason,
    )


def _counters(counters: AgentCounters) -> pb.AgentCounters:
    try:
        return pb.AgentCounters(
            generated_samples=counters.generated_samples,
            dropped_samples=dict(counters.dropped_samples),
            spool_bytes=counters.spool_bytes,
            spool_batches=counters.spool_batches,
        )
    except (ValueError, TypeError) as exc:
        raise CodecError(f"counters: {exc}") from exc


# ---- hello and acks


def has_sample_columns(payload: bytes) -> bool:
    """Whether an encoded batch carries its samples (some of them) as columns."""
    return _parse_batch(payload).HasField("sample_columns")


def rows_form(payload: bytes) -> bytes:
    """The encoded batch with its columns turned into rows, for a collector that
    reads rows only; the payload itself when it has no columns.

    A pure function of the payload (deterministic encoding), so the rows form
    of a batch is the same bytes at every resend. Row samples keep their place
    ahead of the columns' samples, the order the collector decodes them in.
    """
    message = _parse_batch(payload)
    if not message.HasField("sample_columns"):
        return payload
    columns = message.sample_columns
    try:
        label_sets = [dict(entry.labels) for entry in columns.label_sets]
        points = zip(
            columns.name_index,
            columns.unit_index,
            columns.labels_index,
            columns.values,
            columns.time_unix_ms,
            strict=True,
        )
        for name, unit, labels, value, time_ms in points:
            message.samples.add(
                name=columns.names[name],
                unit=columns.units[unit],
                value=value,
                time_unix_ms=time_ms,
                labels=label_sets[labels],
            )
    except (IndexError, ValueError) as exc:
        raise CodecError(f"a spooled batch has inconsistent sample_columns: {exc}") from None
    message.ClearField("sample_columns")
    return message.SerializeToString(deterministic=True)


def _parse_batch(payload: bytes) -> pb.Batch:
    message = pb.Batch()
    try:
        message.ParseFromString(payload)
    except DecodeError as exc:  # only a corrupted spool row gets here
        raise CodecError(f"a spooled batch is undecodable ({len(payload)} bytes)") from exc
    return message


def encode_hello(hello: Hello) -> bytes:
    return pb.HelloRequest(
        agent_id=hello.agent_id,
        hostname=hello.hostname,
        agent_version=hello.agent_version,
        boot_id=hello.boot_id,
    ).SerializeToString()


def decode_hello_reply(data: bytes) -> HelloReply:
    reply = _parse(pb.HelloResponse, data, "HelloResponse")
    return HelloReply(
        dealer_id=reply.dealer_id,
        dealer_name=reply.dealer_name,
        last_committed_seq=reply.last_committed_seq,
        server_time_ms=reply.server_time_unix_ms,
        accepts_sample_columns=reply.accepts_sample_columns,
    )


def decode_ack(data: bytes) -> Ack:
    ack = _parse(pb.Ack, data, "Ack")
    try:
        status = AckStatus(ack.status)
    except ValueError:
        # A newer collector may add statuses; treat them as "not taken" so
        # the batch stays in the spool rather than being lost.
        logger.warning("ack for seq %s has unknown status %s", ack.seq, ack.status)
        status = AckStatus.UNSPECIFIED
    return Ack(
        seq=ack.seq,
        status=status,
        code=ack.code,
        field=ack.field,
        message=ack.message,
        retry_after_ms=max(0, ack.retry_after_ms),
        samples_stored=ack.samples_stored,
    )


def _parse(kind: type[_Reply], data: bytes, name: str) -> _Reply:
    message = kind()
    try:
        message.ParseFromString(data)
    except DecodeError as exc:
        raise CodecError(f"collector sent an undecodable {name} ({len(data)} bytes)") from exc
    return message
