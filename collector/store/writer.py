"""The hot path: a group of batches in one transaction.

Order inside the transaction: decide duplicates, check dealers and agents,
resolve series ids, then samples (bulk), endpoint stats and gaps, and last
the latest points, the (agent_id, seq) bookkeeping rows, the rollup dirty
marks (collector/rollup/dirty.py) and the agents' counters -- one statement
on PostgreSQL (collector/store/group_rows.py). Any failure rolls all of it
back, and nothing learnt meanwhile (series ids, agent owners) is cached.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import (
    Connection,
    Engine,
    select,
    tuple_,
)

from collector.abc import UnknownDealer
from collector.store.dedup import BatchKey, Committed, batch_key, classify
from collector.store.dialect import insert_ignoring_conflicts
from collector.store.engine import HOT_SET_OPTION, WRITE_OPTION, translated_errors
from collector.store.errors import AgentConflict
from collector.store.fastpath import insert_samples
from collector.store.group_rows import Latest, agent_progress, newest_by_agent, write_group_rows
from collector.store.owners import AgentOwners
from collector.store.pinning import WriterConnections
from collector.store.sample_rows import (
    AgentKey,
    Dictionaries,
    Pair,
    PairCache,
    SampleColumns,
    fresh_pair_maps,
    plan_batch,
)
from collector.store.schema import (
    agents,
    dealers,
    ingest_batches,
)
from collector.store.series import SeriesCache, SeriesKey, resolve_missing
from dealerpulse.model import MetricBatch, WriteOutcome, WriteResult

logger = logging.getLogger(__name__)

# (agent_id, seq) pairs per lookup: SQLite allows 32766 bound parameters.
_KEYS_PER_QUERY = 512
_T = TypeVar("_T")


def padded_to_power_of_two(items: Sequence[_T]) -> list[_T]:
    """``items`` with the last one repeated up to the next power of two in length.

    For IN lists, whose SQL text has one placeholder per item: each length is a
    statement of its own, and sqlite3 keeps up to 128 of them prepared on every
    pooled connection, so SQLite's heap kept growing under the soak as groups
    of new sizes came. Padded, a lookup has at most ten texts. A repeated item
    matches the same rows again, which the callers fold into dicts.
    """
    padded = list(items)
    if padded:
        padded.extend([padded[-1]] * ((1 << (len(padded) - 1).bit_length()) - len(padded)))
    return padded


class BatchWriter:
    """Writes groups of batches; one instance per store, safe to call from several threads."""

    def __init__(self, engine: Engine) -> None:
        self._connections = WriterConnections(engine)
        self._series = SeriesCache()
        self._pairs = PairCache()
        # Several ingest writer shards may call write() at once, each with its
        # own agents: the caches lock themselves, and a set update is atomic.
        self._known_dealers: set[str] = set()
        self._owners = AgentOwners()

    def write(self, batches: Sequence[MetricBatch], received_at: datetime) -> list[WriteResult]:
        if received_at.tzinfo is None:
            raise ValueError("received_at must be a timezone-aware UTC datetime")
        if not batches:
            return []
        learnt: dict[SeriesKey, int] = {}
        owners: dict[str, str] = {}
        pair_maps: list[tuple[AgentKey, Dictionaries, dict[Pair, int]]] = []
        action = f"writing a group of {len(batches)} batches"
        with translated_errors(action), self._connections.connection() as connection:
            connection.execution_options(**{WRITE_OPTION: True, HOT_SET_OPTION: True})
            with connection.begin():
                results = self._write_group(
                    connection, batches, received_at, learnt, owners, pair_maps
                )
        # Reached only after the commit: rows rolled back never get cached.
        self._series.remember(learnt)
        self._owners.remember(owners)
        for agent, dictionaries, ids in pair_maps:
            self._pairs.remember(agent, dictionaries, ids)
        return results

    def close(self) -> None:
        self._connections.close()

    def _write_group(
        self,
        connection: Connection,
        batches: Sequence[MetricBatch],
        received_at: datetime,
        learnt: dict[SeriesKey, int],
        owners: dict[str, str],
        pair_maps: list[tuple[AgentKey, Dictionaries, dict[Pair, int]]],
    ) -> list[WriteResult]:
        results = classify(batches, _committed(connection, {batch_key(b) for b in batches}))
        self._check_dealers(connection, batches)
        owners.update(_ensure_agents(connection, batches, received_at, self._owners))
        new = [b for b, r in zip(batches, results, strict=True) if r.outcome is WriteOutcome.STORED]
        latest = Latest([], [], [])
        if new:
            columns = self._sample_columns(connection, new, learnt, pair_maps)
            insert_samples(connection, columns.series_ids, columns.times, columns.values)
            latest = Latest(*columns.latest())
        write_group_rows(connection, new, agent_progress(batches, new), latest, received_at)
        return results

    def _check_dealers(self, connection: Connection, batches: Sequence[MetricBatch]) -> None:
        unknown = {b.dealer_id for b in batches} - self._known_dealers
        if not unknown:
            return
        query = select(dealers.c.dealer_id).where(dealers.c.dealer_id.in_(sorted(unknown)))
        # Dealers are never deleted, so a dealer seen once stays valid.
        self._known_dealers.update(connection.scalars(query))
        for batch in batches:
            if batch.dealer_id not in self._known_dealers:
                raise UnknownDealer(
                    f"batch seq {batch.seq} of agent {batch.agent_id!r}: "
                    f"dealer {batch.dealer_id!r} is not registered"
                )

    def _sample_columns(
        self,
        connection: Connection,
        batches: Sequence[MetricBatch],
        learnt: dict[SeriesKey, int],
        pair_maps: list[tuple[AgentKey, Dictionaries, dict[Pair, int]]],
    ) -> SampleColumns:
        """The rows of the batches' samples, and the newest point of every series touched.

        Series seen for the first time get their ids in one round trip for
        the whole group, between planning and emitting.
        """
        plans = [plan_batch(batch, self._series, self._pairs) for batch in batches]
        missing: dict[SeriesKey, str] = {}
        for plan in plans:
            plan.note_missing(missing)
        if missing:
            learnt.update(resolve_missing(connection, missing))
        columns = SampleColumns()
        for plan in plans:
            plan.emit(columns, learnt)
        pair_maps.extend(fresh_pair_maps(plans))
        return columns


def _committed(connection: Connection, keys: Iterable[BatchKey]) -> dict[BatchKey, Committed]:
    ordered = sorted(keys)
    if connection.dialect.name == "postgresql":
        return _committed_postgresql(connection, ordered)
    found: dict[BatchKey, Committed] = {}
    key_columns = tuple_(ingest_batches.c.agent_id, ingest_batches.c.seq)
    for start in range(0, len(ordered), _KEYS_PER_QUERY):
        chunk = padded_to_power_of_two(ordered[start : start + _KEYS_PER_QUERY])
        query = select(
            ingest_batches.c.agent_id,
            ingest_batches.c.seq,
            ingest_batches.c.digest,
            ingest_batches.c.samples,
        ).where(key_columns.in_(chunk))
        for row in connection.execute(query):
            found[(row.agent_id, row.seq)] = Committed(bytes(row.digest), row.samples)
    return found


# Two arrays instead of an expanding IN list: one statement text for any
# number of keys, and no SQLAlchemy rendering of the list at every group.
_POSTGRESQL_COMMITTED = """
SELECT b.agent_id, b.seq, b.digest, b.samples
FROM unnest(%s::text[], %s::bigint[]) AS k(agent_id, seq)
JOIN ingest_batches AS b ON b.agent_id = k.agent_id AND b.seq = k.seq
"""


def _committed_postgresql(
    connection: Connection, ordered: Sequence[BatchKey]
) -> dict[BatchKey, Committed]:
    parameters = ([agent_id for agent_id, _ in ordered], [seq for _, seq in ordered])
    rows = connection.exec_driver_sql(_POSTGRESQL_COMMITTED, parameters)
    return {
        (agent_id, seq): Committed(bytes(digest), samples)
        for agent_id, seq, digest, samples in rows
    }


def _ensure_agents(
    connection: Connection,
    batches: Sequence[MetricBatch],
    received_at: datetime,
    known: AgentOwners,
) -> dict[str, str]:
    """Create the rows of agents never registered, and refuse agents of another dealer.

    Agents whose owner ``known`` holds cost nothing; the owners looked up
    here are returned, for the caller to remember once committed.
    """
    newest = {a: b for a, b in newest_by_agent(batches).items() if known.get(a) is None}
    looked_up: dict[str, str] = {}
    if newest:
        rows = [
            _new_agent_row(agent_id, batch, received_at)
            for agent_id, batch in sorted(newest.items())
        ]
        connection.execute(insert_ignoring_conflicts(connection, agents), rows)
        query = select(agents.c.agent_id, agents.c.dealer_id).where(
            agents.c.agent_id.in_(padded_to_power_of_two(sorted(newest)))
        )
        looked_up = {row.agent_id: row.dealer_id for row in connection.execute(query)}
    for batch in batches:
        owner = looked_up.get(batch.agent_id) or known.get(batch.agent_id)
        if owner != batch.dealer_id:
            raise AgentConflict(
                f"batch seq {batch.seq}: agent {batch.agent_id!r} belongs to dealer "
                f"{owner!r}, not {batch.dealer_id!r}"
            )
    return looked_up


def _new_agent_row(agent_id: str, batch: MetricBatch, received_at: datetime) -> dict[str, Any]:
    return {
        "agent_id": agent_id,
        "dealer_id": batch.dealer_id,
        "hostname": batch.hostname,
        "version": batch.agent_version,
        "boot_id": batch.boot_id,
        "first_seen": received_at,
        "last_seen": received_at,
        "last_seq": 0,
        "generated_samples": 0,
        "dropped_samples": {},
        "spool_bytes": 0,
        "spool_batches": 0,
    }
