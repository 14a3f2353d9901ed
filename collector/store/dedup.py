"""Which batches of a write group are new: the (agent_id, seq) decision, pure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from dealerpulse.model import MetricBatch, WriteOutcome, WriteResult

BatchKey = tuple[str, int]


@dataclass(frozen=True, slots=True)
class Committed:
    """What the store remembers of a committed batch."""

    digest: bytes
    samples: int


def batch_key(batch: MetricBatch) -> BatchKey:
    return (batch.agent_id, batch.seq)


def classify(
    batches: Sequence[MetricBatch], committed: Mapping[BatchKey, Committed]
) -> list[WriteResult]:
    """One result per batch: STORED for the first sight of a key, else DUPLICATE/CONFLICT.

    ``committed`` holds the group's keys found in the database. A key seen
    earlier in the same group counts as committed by that earlier batch. A
    DUPLICATE reports the samples its first copy stored, so that an agent
    whose first ack was lost still counts them once.
    """
    seen: dict[BatchKey, Committed] = {}
    results: list[WriteResult] = []
    for batch in batches:
        key = batch_key(batch)
        prior = seen.get(key) or committed.get(key)
        if prior is None:
            seen[key] = Committed(batch.digest, len(batch.samples))
            results.append(WriteResult(WriteOutcome.STORED, len(batch.samples)))
        elif prior.digest == batch.digest:
            results.append(WriteResult(WriteOutcome.DUPLICATE, prior.samples))
        else:
            results.append(WriteResult(WriteOutcome.CONFLICT, 0))
    return results
