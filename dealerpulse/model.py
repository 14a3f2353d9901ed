"""The data model every part shares: plain frozen dataclasses, no protobuf.

Protobuf stays at the edges: ``agent/codec.py`` encodes these into the wire
format and ``collector/ingest/codec.py`` decodes the wire format into them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import NamedTuple

Labels = tuple[tuple[str, str], ...]
"""Label pairs sorted by key: hashable, canonical, cheap to compare."""


def labels_of(mapping: dict[str, str] | None = None, /, **kwargs: str) -> Labels:
    merged = dict(mapping or {}, **kwargs)
    return tuple(sorted(merged.items()))


class Sample(NamedTuple):
    """One measurement of one series (name + labels) at one instant.

    A NamedTuple, unlike the other records: the collector builds hundreds of
    thousands per second, and a tuple is built in a third of the time of a
    frozen dataclass while staying just as immutable.
    """

    name: str
    value: float
    unit: str
    time_ms: int
    labels: Labels = ()

    @property
    def metric_type(self) -> str:
        """The family of the metric, the seed's ``metric_type``: "cpu" for "cpu.percent"."""
        return metric_type_of(self.name)


def metric_type_of(name: str) -> str:
    return name.split(".", 1)[0]


@dataclass(frozen=True, slots=True)
class LatencySketch:
    relative_accuracy: float
    offset: int
    bin_counts: tuple[int, ...]
    zero_count: int = 0


@dataclass(frozen=True, slots=True)
class EndpointStat:
    """What one endpoint did during one aggregation interval."""

    route: str
    method: str
    start_ms: int
    end_ms: int
    count: int
    errors: int = 0
    client_errors: int = 0
    duration_sum_ms: float = 0.0
    duration_min_ms: float = 0.0
    duration_max_ms: float = 0.0
    status_counts: tuple[tuple[int, int], ...] = ()
    last_error: str = ""
    last_error_ms: int = 0
    latency: LatencySketch | None = None
    source: str = ""


@dataclass(frozen=True, slots=True)
class Gap:
    """Batches an agent had to drop before sending them; a loss made visible."""

    first_seq: int
    last_seq: int
    from_ms: int
    to_ms: int
    batches: int
    samples: int
    reason: str


@dataclass(frozen=True, slots=True)
class AgentCounters:
    generated_samples: int = 0
    dropped_samples: tuple[tuple[str, int], ...] = ()
    spool_bytes: int = 0
    spool_batches: int = 0


@dataclass(frozen=True, slots=True)
class MetricBatch:
    """One unit of delivery, identified by (agent_id, seq)."""

    agent_id: str
    dealer_id: str
    seq: int
    boot_id: str
    hostname: str
    agent_version: str
    created_ms: int
    # A tuple of rows, or a SampleTable (dealerpulse/columns.py) for a batch
    # that came in columns: equal when they hold the same samples.
    samples: Sequence[Sample] = ()
    endpoints: tuple[EndpointStat, ...] = ()
    gaps: tuple[Gap, ...] = ()
    counters: AgentCounters = field(default_factory=AgentCounters)
    # SHA-256 of the batch's deterministic encoding: a seq resent with other
    # content is told apart from an honest resend.
    digest: bytes = b""


class WriteOutcome(Enum):
    STORED = "stored"
    DUPLICATE = "duplicate"
    # The (agent_id, seq) was committed before with different content.
    CONFLICT = "conflict"


@dataclass(frozen=True, slots=True)
class WriteResult:
    outcome: WriteOutcome
    samples_stored: int = 0
