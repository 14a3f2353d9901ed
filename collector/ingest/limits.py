"""Per-dealer and per-agent ingest limits: a samples/s rate and a series count.

Both protect the shared store from one dealer: a runaway agent (a loop
emitting samples, or a label holding a request id that makes a new series per
request) must not slow every other dealer down or grow the series table
without bound.

- :class:`DealerRateLimiter` -- a token bucket of samples per second per
  dealer. A batch that finds the bucket empty is answered RETRY
  (RESOURCE_EXHAUSTED) with the time until the bucket has refilled, which the
  agent honours before resending. The bucket may go into debt by one batch,
  so a batch larger than the burst still gets through once the debt is paid.
- :class:`SeriesLimiter` -- at most ``max_series`` series per agent. Samples of
  series the agent already has keep flowing; samples that would create a
  series beyond the limit are taken out of the batch, and the ack says so.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from operator import itemgetter

from collector.abc import MetricStore, StoreError
from collector.ingest.errors import StoreUnavailable
from dealerpulse.clock import Clock
from dealerpulse.columns import SampleTable
from dealerpulse.model import Labels, MetricBatch

logger = logging.getLogger(__name__)

SeriesId = tuple[str, Labels]
"""(name, labels) of a series within one agent."""

Dictionaries = tuple[tuple[str, ...], tuple[Labels, ...]]
"""(names, label_sets) of a SampleTable."""

# The SeriesId of a Sample, by position.
_SERIES_OF = itemgetter(0, 4)


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved up; may go into debt."""

    def __init__(self, rate: float, burst: float, now: float) -> None:
        if not rate > 0 or not burst > 0:
            raise ValueError(f"rate and burst must be positive, got {rate} and {burst}")
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self._updated = now

    def take(self, amount: float, now: float) -> float:
        """Take ``amount`` and return 0.0, or take nothing and return the seconds to wait."""
        self.tokens = min(self.burst, self.tokens + max(0.0, now - self._updated) * self.rate)
        self._updated = max(self._updated, now)
        if self.tokens > 0:
            self.tokens -= amount
            return 0.0
        # Admit again once the debt is paid and one token is saved.
        return (1.0 - self.tokens) / self.rate


class DealerRateLimiter:
    """A :class:`TokenBucket` of samples per dealer, shared by all its streams."""

    def __init__(
        self, samples_per_s: float, clock: Clock, burst_s: float = 1.0, max_dealers: int = 100_000
    ) -> None:
        self._rate = samples_per_s
        self._burst = samples_per_s * burst_s
        self._clock = clock
        self._max_dealers = max_dealers
        self._buckets: dict[str, TokenBucket] = {}

    @property
    def samples_per_s(self) -> float:
        return self._rate

    def delay_s(self, dealer_id: str, samples: int) -> float:
        """0.0 when the dealer may send ``samples`` now, else how long to wait."""
        now = self._clock.monotonic()
        bucket = self._buckets.get(dealer_id)
        if bucket is None:
            if len(self._buckets) >= self._max_dealers:
                self._buckets.clear()  # forgetting only ever grants a fresh burst
            bucket = self._buckets[dealer_id] = TokenBucket(self._rate, self._burst, now)
        return bucket.take(samples, now)


@dataclass(frozen=True, slots=True)
class SeriesVerdict:
    """What :meth:`SeriesLimiter.admit` let through."""

    batch: MetricBatch
    # Samples taken out because their series would exceed the limit.
    refused_samples: int = 0
    first_refused: str = ""


class SeriesLimiter:
    """At most ``max_series`` series per agent; the agents' series known in memory.

    An agent's series are loaded from the store the first time one of its
    batches arrives (so the limit holds across collector restarts), then
    kept up to date from the batches admitted. At most ``max_agents`` agents
    are remembered (least recently used forgotten; reloaded when they return).
    Several collectors each count on their own: the limit is then exceeded
    by at most what the others admitted since they last loaded it.
    """

    def __init__(
        self,
        store: MetricStore,
        max_series: int,
        max_agents: int = 10_000,
        loader: Callable[[str], list[SeriesId]] | None = None,
    ) -> None:
        self.max_series = max_series
        self._max_agents = max_agents
        self._load = loader or _store_loader(store)
        self._known: OrderedDict[str, set[SeriesId]] = OrderedDict()
        # Per agent: the dictionaries of its last columnar batch and the index
        # pairs under them whose series are known (a subset of _known's).
        self._known_pairs: dict[str, tuple[Dictionaries, set[tuple[int, int]]]] = {}

    async def admit(self, batch: MetricBatch) -> SeriesVerdict:
        """The batch without the samples of series beyond the limit. Raises StoreUnavailable."""
        known = await self._series_of(batch.agent_id)
        samples = batch.samples
        if (
            isinstance(samples, SampleTable)
            and samples.has_distinct_dictionaries()
            and self._admit_table(batch.agent_id, samples, known)
        ):
            return SeriesVerdict(batch)
        # Rows, or columns over the limit: pick the samples to keep one by one.
        # Samples are tuples: the (name, labels) column is built in C.
        new = set(map(_SERIES_OF, samples)) - known
        room = self.max_series - len(known)
        if len(new) <= room:
            known |= new
            return SeriesVerdict(batch)
        # Admit new series in the order they appear, as long as there is room.
        admitted: set[SeriesId] = set()
        for sample in batch.samples:
            key = (sample.name, sample.labels)
            if key in new and key not in admitted and len(admitted) < room:
                admitted.add(key)
        known |= admitted
        kept = tuple(s for s in batch.samples if (s.name, s.labels) in known)
        refused = [s for s in batch.samples if (s.name, s.labels) not in known]
        return SeriesVerdict(
            dataclasses.replace(batch, samples=kept), len(refused), refused[0].name
        )

    def _admit_table(self, agent_id: str, table: SampleTable, known: set[SeriesId]) -> bool:
        """True when every series of the table fits (and is now known).

        An agent's batches usually repeat the dictionaries and index pairs of
        the one before: then the answer is two C-level set operations.
        """
        pairs = set(table.series_pairs())
        cached = self._known_pairs.get(agent_id)
        same_dictionaries = cached is not None and cached[0] == table.dictionaries
        if cached is not None and same_dictionaries and pairs <= cached[1]:
            return True
        names, label_sets = table.names, table.label_sets
        new = {(names[n], label_sets[labels]) for n, labels in pairs} - known
        if len(new) > self.max_series - len(known):
            return False
        known |= new
        if cached is not None and same_dictionaries:
            pairs |= cached[1]
        self._known_pairs[agent_id] = (table.dictionaries, pairs)
        return True

    async def _series_of(self, agent_id: str) -> set[SeriesId]:
        known = self._known.get(agent_id)
        if known is not None:
            self._known.move_to_end(agent_id)
            return known
        try:
            loaded = set(await asyncio.to_thread(self._load, agent_id))
        except StoreError as exc:
            raise StoreUnavailable(f"cannot read the series of agent {agent_id!r}: {exc}") from exc
        # Another batch of the agent may have loaded it meanwhile: keep one set.
        known = self._known.setdefault(agent_id, loaded)
        while len(self._known) > self._max_agents:
            evicted, _ = self._known.popitem(last=False)
            self._known_pairs.pop(evicted, None)
        return known


def _store_loader(store: MetricStore) -> Callable[[str], list[SeriesId]]:
    """The store's ``agent_series`` (the SQLAlchemy store has it); else nothing known."""
    found = getattr(store, "agent_series", None)
    if found is None:
        logger.warning("%r cannot list an agent's series; counting from this process only", store)
        return lambda agent_id: []
    load: Callable[[str], list[SeriesId]] = found
    return load
