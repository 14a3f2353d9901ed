"""Series identity: the canonical labels key and the in-memory id cache.

A series is (dealer_id, agent_id, name, labels). Ids are created with
INSERT ... ON CONFLICT DO NOTHING and read back, which stays correct when
several collectors share one database. Ids learnt inside a transaction are
kept apart until it commits: a rolled-back series row must not stay cached.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping

from sqlalchemy import Connection, select

from collector.store.dialect import insert_ignoring_conflicts
from collector.store.schema import series
from dealerpulse.model import Labels, metric_type_of

SeriesKey = tuple[str, str, str, Labels]
"""(dealer_id, agent_id, name, labels)."""

# About 100 bytes an entry (measured with tracemalloc) plus the name and labels
# it keeps alive: a few hundred MiB at most, however many agents come and go
# over a collector's life (issue 7, the soak).
MAX_CACHED_SERIES = 1_000_000


def labels_key(labels: Labels) -> str:
    """Canonical text of a label set: the same set always gives the same key."""
    return json.dumps(sorted(labels), separators=(",", ":"), ensure_ascii=False)


def labels_from_json(document: object) -> Labels:
    if not isinstance(document, dict):
        raise ValueError(f"series labels must be a JSON object, got {document!r}")
    return tuple(sorted((str(key), str(value)) for key, value in document.items()))


class SeriesCache:
    """Committed series ids, per agent, at most ``max_series`` of them in all.

    Grouping by (dealer_id, agent_id) lets the hot loop look up each sample
    by (name, labels) without building a four-part key. Past ``max_series``
    the least recently written agents are forgotten whole: a long-lived
    collector sees agents come and go, and an id not cached is only one
    round trip away (``resolve_missing`` reads it back).
    """

    def __init__(self, max_series: int = MAX_CACHED_SERIES) -> None:
        if max_series <= 0:
            raise ValueError(f"max_series must be positive, not {max_series!r}")
        self._max_series = max_series
        self._by_agent: OrderedDict[tuple[str, str], dict[tuple[str, Labels], int]] = OrderedDict()
        self._count = 0
        self._lock = threading.Lock()

    def of_agent(self, dealer_id: str, agent_id: str) -> dict[tuple[str, Labels], int]:
        """The agent's ids by (name, labels); treat as read-only."""
        with self._lock:
            ids = self._by_agent.get((dealer_id, agent_id))
            if ids is None:
                return _EMPTY
            self._by_agent.move_to_end((dealer_id, agent_id))
            return ids

    def remember(self, learnt: Mapping[SeriesKey, int]) -> None:
        """Keep ids learnt in a transaction that has committed."""
        with self._lock:
            for (dealer_id, agent_id, name, labels), series_id in learnt.items():
                ids = self._by_agent.setdefault((dealer_id, agent_id), {})
                self._by_agent.move_to_end((dealer_id, agent_id))
                if (name, labels) not in ids:
                    self._count += 1
                ids[(name, labels)] = series_id
            # The newest agent is never evicted, even if alone it is over the bound.
            while self._count > self._max_series and len(self._by_agent) > 1:
                _, evicted = self._by_agent.popitem(last=False)
                self._count -= len(evicted)

    def clear(self) -> None:
        with self._lock:
            self._by_agent.clear()
            self._count = 0

    def __len__(self) -> int:
        return self._count


_EMPTY: dict[tuple[str, Labels], int] = {}


def resolve_missing(
    connection: Connection, missing: Mapping[SeriesKey, str]
) -> dict[SeriesKey, int]:
    """Create (if needed) and look up the series of ``missing`` (key -> unit)."""
    if not missing:
        return {}
    rows = [
        {
            "dealer_id": dealer_id,
            "agent_id": agent_id,
            "name": name,
            "metric_type": metric_type_of(name),
            "unit": unit,
            "labels": dict(labels),
            "labels_key": labels_key(labels),
        }
        for (dealer_id, agent_id, name, labels), unit in missing.items()
    ]
    connection.execute(insert_ignoring_conflicts(connection, series), rows)
    found = _ids_of_agents(connection, {key[1] for key in missing})
    resolved: dict[SeriesKey, int] = {}
    for key in missing:
        dealer_id, agent_id, name, labels = key
        resolved[key] = found[(dealer_id, agent_id, name, labels_key(labels))]
    return resolved


def _ids_of_agents(
    connection: Connection, agent_ids: Iterable[str]
) -> dict[tuple[str, str, str, str], int]:
    query = select(
        series.c.id, series.c.dealer_id, series.c.agent_id, series.c.name, series.c.labels_key
    ).where(series.c.agent_id.in_(sorted(agent_ids)))
    return {
        (row.dealer_id, row.agent_id, row.name, row.labels_key): row.id
        for row in connection.execute(query)
    }
