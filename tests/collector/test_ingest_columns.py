"""Batch.sample_columns: the columnar form of samples, next to the row form.

Columns and rows must decode to the same samples, be judged by the same
rules (problems named by the column that holds them), and a batch whose
columns do not fit together is refused whole, with nothing stored.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ingest_batches import CORRUPTIONS, Corruption, expected_field, good_batch, valid_batches
from ingest_harness import run, running_collector, within

from agent.codec import decode_hello_reply, encode_batch
from collector.abc import MetricStore
from collector.ingest import codec
from collector.ingest.validate import Caller, Limits, validate_batch
from dealerpulse.model import MetricBatch
from dealerpulse.v1 import ingest_pb2 as pb

NOW_MS = 1_767_225_600_000
LIMITS = Limits()
INVALID = grpc.StatusCode.INVALID_ARGUMENT
SAMPLE_CORRUPTIONS = [c for c in CORRUPTIONS if c.field.startswith("samples[")]


def wire(batch: MetricBatch, *, columnar: bool) -> pb.Batch:
    return pb.Batch.FromString(encode_batch(batch, columnar=columnar))


def judged(message: pb.Batch) -> codec.Rejection | None:
    """What the collector answers a batch: a decode or validation problem, or None."""
    try:
        decoded = codec.decode_batch(message)
    except codec.ColumnsInvalid as invalid:
        return invalid.rejection
    caller = Caller(
        token_dealer_id=decoded.batch.dealer_id,
        dealer_known=True,
        encoded_bytes=decoded.encoded_bytes,
        now_ms=NOW_MS,
    )
    return validate_batch(decoded.batch, caller, LIMITS, None, decoded.row_samples)


_ROW_FIELD = re.compile(r"samples\[(\d+)\](?:\.(\w+))?(.*)")
_COLUMN_OF = {"name": "name_index", "unit": "unit_index", "labels": "labels_index"}


def columnar_field(row_field: str) -> str:
    """Where the columnar form holds what ``samples[i].part`` names in the row form."""
    match = _ROW_FIELD.fullmatch(row_field)
    if match is None:
        return row_field  # not a sample's field: the same in both forms
    index, part, rest = match.groups()
    column = _COLUMN_OF.get(part or "", "values" if part in (None, "value") else part)
    return f"sample_columns.{column}[{index}]{rest}"


# ---- the two forms are the same samples


# Batches are costly to draw: a busy machine must not fail the health check.
RELAXED = settings(suppress_health_check=[HealthCheck.too_slow])


@RELAXED
@given(valid_batches(NOW_MS, LIMITS))
def test_columns_and_rows_decode_to_the_same_samples(batch: MetricBatch) -> None:
    rows = codec.decode_batch(wire(batch, columnar=False))
    columns = codec.decode_batch(wire(batch, columnar=True))
    assert columns.batch.samples == rows.batch.samples == batch.samples
    assert dataclasses.replace(columns.batch, digest=b"") == dataclasses.replace(
        rows.batch, digest=b""
    )
    assert judged(wire(batch, columnar=True)) is None


@RELAXED
@given(valid_batches(NOW_MS, LIMITS), valid_batches(NOW_MS, LIMITS))
def test_rows_and_columns_in_one_batch_are_rows_first(
    first: MetricBatch, second: MetricBatch
) -> None:
    message = wire(first, columnar=False)
    message.MergeFrom(wire(dataclasses.replace(first, samples=second.samples), columnar=True))
    decoded = codec.decode_batch(message)
    assert decoded.batch.samples == (*first.samples, *second.samples)
    assert decoded.row_samples == len(first.samples)


@given(st.sampled_from(SAMPLE_CORRUPTIONS), st.booleans())
def test_a_bad_sample_in_columns_is_refused_naming_its_column(
    corruption: Corruption, after_rows: bool
) -> None:
    template = good_batch("sunrise-motors", "agent-1", 7, NOW_MS)
    spoiled = corruption.spoil(template, NOW_MS, LIMITS)
    row_field = expected_field(corruption, spoiled)
    message = wire(spoiled, columnar=True)
    if after_rows:
        # The same samples behind a clean row-form sample: column indexes do not shift.
        clean = dataclasses.replace(template, samples=(template.samples[0]._replace(name="x.y"),))
        message.samples.extend(wire(clean, columnar=False).samples)
    rejection = judged(message)
    assert rejection is not None, corruption.name
    assert (rejection.code, rejection.field) == (corruption.code, columnar_field(row_field))
    assert rejection.field in rejection.message


# ---- columns that do not fit together


def _good_columns() -> pb.Batch:
    return wire(good_batch("sunrise-motors", "agent-1", 7, NOW_MS, n_samples=3), columnar=True)


def _drop_last(column: str) -> pb.Batch:
    message = _good_columns()
    del getattr(message.sample_columns, column)[-1]
    return message


def _point_outside(column: str) -> pb.Batch:
    message = _good_columns()
    getattr(message.sample_columns, column)[1] = 99
    return message


BROKEN_COLUMNS = [
    ("short time column", _drop_last("time_unix_ms"), "sample_columns.time_unix_ms"),
    ("short name index", _drop_last("name_index"), "sample_columns.name_index"),
    ("short unit index", _drop_last("unit_index"), "sample_columns.unit_index"),
    ("short labels index", _drop_last("labels_index"), "sample_columns.labels_index"),
    ("name out of range", _point_outside("name_index"), "sample_columns.name_index[1]"),
    ("unit out of range", _point_outside("unit_index"), "sample_columns.unit_index[1]"),
    ("labels out of range", _point_outside("labels_index"), "sample_columns.labels_index[1]"),
]


@pytest.mark.parametrize(("name", "message", "field"), BROKEN_COLUMNS, ids=lambda x: str(x)[:30])
def test_columns_that_do_not_fit_together_are_refused_by_name(
    name: str, message: pb.Batch, field: str
) -> None:
    rejection = judged(message)
    assert rejection is not None, name
    assert (rejection.code, rejection.field) == (INVALID, field)
    assert rejection.message.startswith(f"{field}: ")


# ---- end to end: a real server and store (SQLite and PostgreSQL)


def test_the_collector_stores_columns_and_refuses_broken_ones_whole(store: MetricStore) -> None:
    async def scenario() -> None:
        async with running_collector(store) as collector:
            agent = collector.agent()
            stream = collector.open_stream()
            good = wire(collector.batch(agent, 1, n_samples=5), columnar=True)
            ack = await stream.roundtrip(good)
            assert (ack.status, ack.samples_stored) == (pb.Ack.STORED, 5)
            for seq, (name, template, field) in enumerate(BROKEN_COLUMNS, start=2):
                broken = pb.Batch()
                broken.CopyFrom(template)
                broken.agent_id, broken.dealer_id = agent, good.dealer_id
                broken.seq, broken.created_unix_ms = seq, good.created_unix_ms
                ack = await stream.roundtrip(broken)
                assert (ack.status, ack.code, ack.field) == (
                    pb.Ack.REJECTED,
                    INVALID.value[0],
                    field,
                ), name
            assert await stream.finish() == grpc.StatusCode.OK
            assert await asyncio.to_thread(store.committed_batches, agent) == {1: 5}
            assert await asyncio.to_thread(store.count_samples, agent) == 5

    run(scenario())


def test_hello_tells_the_agent_that_columns_are_accepted(store: MetricStore) -> None:
    async def scenario() -> None:
        async with running_collector(store) as collector:
            hello = pb.HelloRequest(agent_id=collector.agent(), hostname="dms-01")
            reply = await within(collector.stub.Hello(hello, metadata=collector.metadata))
            assert decode_hello_reply(reply.SerializeToString()).accepts_sample_columns

    run(scenario())
