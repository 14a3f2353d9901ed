"""Interfaces of the collector, by role. Implementations are named <Tech><Role>."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from dealerpulse.model import Labels, MetricBatch, WriteResult


class StoreError(Exception):
    """Base of the store's errors."""


class DealerExists(StoreError):
    """A dealer with this id is registered already."""


class UnknownDealer(StoreError):
    """No dealer with this id."""


@dataclass(frozen=True, slots=True)
class Dealer:
    dealer_id: str
    name: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class AgentInfo:
    """What an agent says about itself when it connects."""

    agent_id: str
    dealer_id: str
    hostname: str
    version: str
    boot_id: str


@dataclass(frozen=True, slots=True)
class AgentRecord:
    agent_id: str
    dealer_id: str
    hostname: str
    version: str
    boot_id: str
    first_seen: datetime
    last_seen: datetime
    last_seq: int
    # The agent's own cumulative totals, as last reported.
    generated_samples: int
    dropped_samples: dict[str, int]
    spool_bytes: int
    spool_batches: int
    # The agent's clock minus the collector's, as last estimated (None: not known).
    clock_offset_ms: int | None = None


@dataclass(frozen=True, slots=True)
class LatestSample:
    """The newest point of one series, and when the collector received it."""

    dealer_id: str
    agent_id: str
    name: str
    labels: Labels
    unit: str
    value: float
    time: datetime
    received_at: datetime


@dataclass(frozen=True, slots=True)
class StoredSample:
    name: str
    labels: Labels
    unit: str
    value: float
    time: datetime


@dataclass(frozen=True, slots=True)
class GapRecord:
    agent_id: str
    dealer_id: str
    first_seq: int
    last_seq: int
    from_time: datetime
    to_time: datetime
    batches: int
    samples: int
    reason: str


class MetricStore(ABC):
    """Where the collector keeps what agents send. Thread-safe; calls are blocking.

    The ingest writer calls :meth:`write_batches` from one thread; everything
    else may be called from any thread.
    """

    @abstractmethod
    def migrate(self) -> None:
        """Bring the schema to the newest version (idempotent)."""

    @abstractmethod
    def write_batches(
        self, batches: Sequence[MetricBatch], received_at: datetime
    ) -> list[WriteResult]:
        """Commit every batch in ONE transaction and return one result per batch, in order.

        A batch whose (agent_id, seq) is committed already, or appears earlier in
        ``batches``, is a DUPLICATE (same digest) or a CONFLICT (other digest)
        and adds no rows. Returns only after the commit; raises StoreError (and
        commits nothing) when the transaction fails.
        """

    @abstractmethod
    def create_dealer(self, dealer_id: str, name: str, token_hash: str, now: datetime) -> Dealer:
        """Register a dealer with the hash of its first token. Raises DealerExists."""

    @abstractmethod
    def get_dealer(self, dealer_id: str) -> Dealer | None: ...

    @abstractmethod
    def list_dealers(self) -> list[Dealer]: ...

    @abstractmethod
    def token_hashes(self, dealer_id: str) -> list[str]:
        """Hashes of the dealer's tokens that are valid now."""

    @abstractmethod
    def register_agent(self, agent: AgentInfo, now: datetime) -> int:
        """Create or update the agent's row (last seen, boot id...).

        Returns the highest seq committed for the agent (0 if none).
        Raises UnknownDealer.
        """

    @abstractmethod
    def list_agents(self, dealer_id: str | None = None) -> list[AgentRecord]: ...

    def record_clock_offset(
        self, dealer_id: str, agent_id: str, offset_ms: int, *, if_unknown: bool = False
    ) -> None:
        """Remember how far the dealer's agent's clock is ahead (+) or behind (-) ours.

        ``if_unknown``: only when the agent has no offset recorded yet (a
        stream's first, single-batch estimate). Not abstract: a store that does
        not keep it ignores it.
        """
        return None

    @abstractmethod
    def latest_samples(
        self, dealer_id: str | None = None, names: Sequence[str] | None = None
    ) -> list[LatestSample]:
        """The newest point of every series (optionally only these names)."""

    @abstractmethod
    def query_samples(
        self,
        dealer_id: str,
        name: str,
        start: datetime,
        end: datetime,
        agent_id: str | None = None,
    ) -> list[StoredSample]:
        """Points of one metric name in [start, end), oldest first."""

    @abstractmethod
    def count_samples(self, agent_id: str) -> int:
        """How many sample rows are stored for the agent."""

    @abstractmethod
    def committed_batches(self, agent_id: str) -> dict[int, int]:
        """seq -> samples stored, for every batch committed for the agent."""

    @abstractmethod
    def list_gaps(self, dealer_id: str | None = None) -> list[GapRecord]: ...

    @abstractmethod
    def close(self) -> None: ...
