"""From a group of batches to the sample rows written, as three columns.

The writer needs, for every sample, its series id, time and value, plus the
newest point of each series touched. Row-form batches are walked sample by
sample. A columnar batch (:class:`SampleTable`) is resolved per distinct
(name index, labels index) pair and then mapped column-wise in C; and since an
agent repeats its dictionaries from one batch to the next, the pair -> id map
of its previous batch usually serves the next one as is (:class:`PairCache`).

Planning is split from emitting so that the series never seen before, of
every batch of the group, are created and read back in one round trip
between the two.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from operator import itemgetter

from collector.store.series import SeriesCache, SeriesKey
from dealerpulse.columns import SampleTable
from dealerpulse.model import Labels, MetricBatch, Sample

Pair = tuple[int, int]
"""(name index, labels index) of a columnar sample."""
Dictionaries = tuple[tuple[str, ...], tuple[Labels, ...]]
AgentKey = tuple[str, str]
"""(dealer_id, agent_id)."""

# Sample is a NamedTuple: itemgetter columns are built in C.
_SERIES = itemgetter(0, 4)
_TIME = itemgetter(3)
_VALUE = itemgetter(1)

# Pair -> id entries kept in all; an agent's map is about its series count.
MAX_CACHED_PAIRS = 1_000_000


@dataclass(slots=True)
class SampleColumns:
    """The rows to insert, column by column, and the newest point per series.

    ``newest`` maps a series id to the row holding its newest point. Row
    indexes rather than (time, value) tuples: ints are not tracked by the
    garbage collector, and tens of thousands of tuples per group made the
    collector's young generation run over and over.
    """

    series_ids: list[int] = field(default_factory=list)
    times: list[int] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    newest: dict[int, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.series_ids)

    def add(self, series_ids: Sequence[int], times: Sequence[int], values: Sequence[float]) -> None:
        start = len(self.series_ids)
        self.series_ids += series_ids
        self.times += times
        self.values += values
        self._note_newest(series_ids, times, start)

    def latest(self) -> tuple[list[int], list[int], list[float]]:
        """(series ids ascending, their newest times, their newest values)."""
        ids = sorted(self.newest)
        rows = list(map(self.newest.__getitem__, ids))
        return (
            ids,
            list(map(self.times.__getitem__, rows)),
            list(map(self.values.__getitem__, rows)),
        )

    def _note_newest(self, series_ids: Sequence[int], times: Sequence[int], start: int) -> None:
        rows: Iterable[int] = range(start, start + len(series_ids))
        # A series twice in one batch: the newest time wins (the later sample
        # on a tie). In time order, which is how agents send them, the dict
        # below keeps each series' last row, which is that one; otherwise go
        # in time order first (sort is stable). The check runs in C.
        if len(set(series_ids)) != len(series_ids) and list(times) != sorted(times):
            order = sorted(range(len(times)), key=times.__getitem__)
            series_ids = [series_ids[i] for i in order]
            rows = [start + i for i in order]
        newest = dict(zip(series_ids, rows, strict=True))
        if self.newest.keys().isdisjoint(newest):
            self.newest.update(newest)  # the usual case: one batch per agent
            return
        all_times = self.times
        for series_id, row in newest.items():
            held = self.newest.get(series_id)
            if held is None or all_times[row] >= all_times[held]:
                self.newest[series_id] = row


class PairCache:
    """Per agent: the dictionaries of its last columnar batch and their pair -> id map.

    Holds committed ids only (the writer stores a map after its transaction
    committed). Bounded in entries, least recently written agents first out.
    """

    def __init__(self, max_pairs: int = MAX_CACHED_PAIRS) -> None:
        self._max_pairs = max_pairs
        self._by_agent: OrderedDict[AgentKey, tuple[Dictionaries, dict[Pair, int]]] = OrderedDict()
        self._count = 0
        self._lock = threading.Lock()

    def get(self, agent: AgentKey, dictionaries: Dictionaries) -> dict[Pair, int] | None:
        with self._lock:
            held = self._by_agent.get(agent)
        if held is None or held[0] != dictionaries:
            return None
        return held[1]

    def remember(self, agent: AgentKey, dictionaries: Dictionaries, ids: dict[Pair, int]) -> None:
        with self._lock:
            previous = self._by_agent.pop(agent, None)
            if previous is not None:
                self._count -= len(previous[1])
            self._by_agent[agent] = (dictionaries, ids)
            self._count += len(ids)
            while self._count > self._max_pairs and len(self._by_agent) > 1:
                _, (_, evicted) = self._by_agent.popitem(last=False)
                self._count -= len(evicted)

    def clear(self) -> None:
        with self._lock:
            self._by_agent.clear()
            self._count = 0


@dataclass(slots=True)
class _RowPlan:
    """A row-form batch: ids looked up sample by sample."""

    batch: MetricBatch
    ids: dict[tuple[str, Labels], int]

    def note_missing(self, missing: dict[SeriesKey, str]) -> None:
        dealer_id, agent_id = self.batch.dealer_id, self.batch.agent_id
        for sample in self.batch.samples:
            if (sample.name, sample.labels) not in self.ids:
                key = (dealer_id, agent_id, sample.name, sample.labels)
                missing.setdefault(key, sample.unit)

    def emit(self, columns: SampleColumns, learnt: Mapping[SeriesKey, int]) -> None:
        samples: Sequence[Sample] = self.batch.samples
        dealer_id, agent_id = self.batch.dealer_id, self.batch.agent_id
        ids = self.ids
        series_ids = [
            ids[series] if series in ids else learnt[(dealer_id, agent_id, *series)]
            for series in map(_SERIES, samples)
        ]
        columns.add(series_ids, list(map(_TIME, samples)), list(map(_VALUE, samples)))


@dataclass(slots=True)
class _TablePlan:
    """A columnar batch: ids per distinct pair, then mapped over the columns."""

    batch: MetricBatch
    table: SampleTable
    pair_ids: dict[Pair, int]
    # Pairs whose series the cache did not know: resolved between plan and emit.
    unknown: list[Pair]
    # Whether pair_ids is new and must be cached once the transaction commits.
    fresh: bool

    def note_missing(self, missing: dict[SeriesKey, str]) -> None:
        if not self.unknown:
            return
        table = self.table
        unknown = set(self.unknown)
        units: dict[Pair, str] = {}
        # Only on an agent's first sight of a series: Python per sample is fine.
        for pair, unit in zip(table.series_pairs(), table.unit_index, strict=True):
            if pair in unknown and pair not in units:
                units[pair] = table.units[unit]
        for pair, unit_name in units.items():
            missing.setdefault(self._key(pair), unit_name)

    def emit(self, columns: SampleColumns, learnt: Mapping[SeriesKey, int]) -> None:
        for pair in self.unknown:
            self.pair_ids[pair] = learnt[self._key(pair)]
        series_ids = list(map(self.pair_ids.__getitem__, self.table.series_pairs()))
        columns.add(series_ids, self.table.times, self.table.values)

    def _key(self, pair: Pair) -> SeriesKey:
        name, labels = pair
        table = self.table
        return (
            self.batch.dealer_id,
            self.batch.agent_id,
            table.names[name],
            table.label_sets[labels],
        )


Plan = _RowPlan | _TablePlan


def plan_batch(batch: MetricBatch, series: SeriesCache, pairs: PairCache) -> Plan:
    """How to find the series ids of the batch's samples, and which are unknown."""
    samples = batch.samples
    ids = series.of_agent(batch.dealer_id, batch.agent_id)
    if not isinstance(samples, SampleTable) or not samples.has_distinct_dictionaries():
        return _RowPlan(batch, ids)
    distinct = set(samples.series_pairs())
    cached = pairs.get((batch.dealer_id, batch.agent_id), samples.dictionaries)
    if cached is not None and distinct <= cached.keys():
        return _TablePlan(batch, samples, cached, [], fresh=False)
    names, label_sets = samples.names, samples.label_sets
    pair_ids: dict[Pair, int] = {}
    unknown: list[Pair] = []
    for pair in distinct:
        series_id = ids.get((names[pair[0]], label_sets[pair[1]]))
        if series_id is None:
            unknown.append(pair)
        else:
            pair_ids[pair] = series_id
    return _TablePlan(batch, samples, pair_ids, unknown, fresh=True)


def fresh_pair_maps(plans: Sequence[Plan]) -> list[tuple[AgentKey, Dictionaries, dict[Pair, int]]]:
    """The pair maps built for this group, to cache once its transaction committed."""
    return [
        ((plan.batch.dealer_id, plan.batch.agent_id), plan.table.dictionaries, plan.pair_ids)
        for plan in plans
        if isinstance(plan, _TablePlan) and plan.fresh
    ]
