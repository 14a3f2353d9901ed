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
from collections.abc import Iterable, Mapping, Sequence

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
    """The ids of the series of ``missing`` (key -> unit), created where needed.

    Read first: after a restart the cache is cold but nearly every series
    exists, and a read is far cheaper than an insert that finds a conflict.
    Only what the read did not find is inserted (ignoring conflicts, so two
    collectors may race) and read back.
    """
    if not missing:
        return {}
    keyed = {key: (key[0], key[1], key[2], labels_key(key[3])) for key in missing}
    agents = {key[1] for key in missing}
    found = _ids_of_agents(connection, agents)
    absent = [key for key, stored in keyed.items() if stored not in found]
    if absent:
        _insert_series(connection, [(key, keyed[key][3], missing[key]) for key in absent])
        found = _ids_of_agents(connection, {key[1] for key in absent}) | found
    return {key: found[stored] for key, stored in keyed.items()}


def _insert_series(connection: Connection, rows: Sequence[tuple[SeriesKey, str, str]]) -> None:
    """Insert (key, labels_key, unit) rows, ignoring any that exist by now."""
    if connection.dialect.name == "postgresql":
        columns = (
            [key[0] for key, _, _ in rows],
            [key[1] for key, _, _ in rows],
            [key[2] for key, _, _ in rows],
            [metric_type_of(key[2]) for key, _, _ in rows],
            [unit for _, _, unit in rows],
            [json.dumps(dict(key[3]), ensure_ascii=False) for key, _, _ in rows],
            [text for _, text, _ in rows],
        )
        connection.exec_driver_sql(_POSTGRESQL_INSERT_SERIES, tuple(map(text_array, columns)))
        return
    connection.execute(
        insert_ignoring_conflicts(connection, series),
        [
            {
                "dealer_id": dealer_id,
                "agent_id": agent_id,
                "name": name,
                "metric_type": metric_type_of(name),
                "unit": unit,
                "labels": dict(labels),
                "labels_key": text,
            }
            for (dealer_id, agent_id, name, labels), text, unit in rows
        ],
    )


# One statement for any number of series: SQLAlchemy's executemany sends the
# rows through Python parameter processing, 30 us a series (50,000 new series
# of 100 agents held the writer up for 4 s).
_POSTGRESQL_INSERT_SERIES = """
INSERT INTO series (dealer_id, agent_id, name, metric_type, unit, labels, labels_key)
SELECT d, a, n, m, u, l::jsonb, k
FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[])
    AS x(d, a, n, m, u, l, k)
ON CONFLICT DO NOTHING
"""


def text_array(values: Sequence[str]) -> str:
    """A PostgreSQL text[] literal: every element double-quoted, ``"`` and ``\\`` escaped.

    Quoted elements keep commas, braces, spaces and the word NULL as text.
    Callers pass text without NUL (validation refuses it; PostgreSQL could not
    store it anyway).
    """
    quoted = ('"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"' for value in values)
    return "{" + ",".join(quoted) + "}"


def _ids_of_agents(
    connection: Connection, agent_ids: Iterable[str]
) -> dict[tuple[str, str, str, str], int]:
    query = select(
        series.c.id, series.c.dealer_id, series.c.agent_id, series.c.name, series.c.labels_key
    ).where(series.c.agent_id.in_(sorted(agent_ids)))
    # Unpacked by position: a group of new agents reads tens of thousands.
    return {
        (dealer_id, agent_id, name, text): series_id
        for series_id, dealer_id, agent_id, name, text in connection.execute(query)
    }
