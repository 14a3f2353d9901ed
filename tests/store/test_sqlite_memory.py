"""SQLite's memory in the collector: a process-wide budget, and few statement texts.

The soak found SQLite's heap climbing 1 -> 13 MiB in 3 minutes. Not the page
caches (in WAL mode a connection empties its cache whenever another one has
committed): prepared statements. sqlite3 keeps up to 128 statement texts
prepared per connection, and the writer made a new text for every group size
(the last multi-row INSERT, the IN lists of its lookups), on every pooled
connection it used. These tests pin the bounded shapes, that writes of every
size still store every row once, and the ``sqlite_heap_limit_mib`` option.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Connection, event

from collector.abc import AgentInfo
from collector.pool_settings import DEFAULT_SQLITE_HEAP_LIMIT_MIB, PoolSettings
from collector.settings import COLLECTOR_OPTIONS, CollectorSettings
from collector.store import SQLAlchemyMetricStore, open_store
from collector.store.engine import HOT_SET_OPTION, SQLITE_OTHER_CACHE_MIB
from collector.store.fastpath import SQLITE_ROWS_PER_INSERT, sqlite_chunk_sizes
from collector.store.writer import padded_to_power_of_two
from dealerpulse.config import ConfigError, load_file, resolve
from dealerpulse.model import MetricBatch, Sample, WriteOutcome, labels_of
from dealerpulse.tokens import hash_token

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
NOW_MS = int(NOW.timestamp() * 1000)


def test_any_number_of_rows_is_inserted_with_at_most_ten_statement_texts() -> None:
    seen: set[int] = set()
    for rows in range(3 * SQLITE_ROWS_PER_INSERT):
        sizes = sqlite_chunk_sizes(rows)
        assert sum(sizes) == rows
        assert all(0 < size <= SQLITE_ROWS_PER_INSERT for size in sizes)
        seen.update(sizes)
    assert len(seen) <= 10, sorted(seen)


def test_in_lists_are_padded_to_a_few_lengths_with_the_same_members() -> None:
    lengths = set()
    for count in range(1, 513):
        items = list(range(count))
        padded = padded_to_power_of_two(items)
        assert set(padded) == set(items) and padded[:count] == items
        lengths.add(len(padded))
    assert len(lengths) == 10  # 1, 2, 4, ... 512
    assert padded_to_power_of_two([]) == []


def _batch(agent: str, seq: int, samples: int) -> MetricBatch:
    return MetricBatch(
        agent_id=agent,
        dealer_id="memory-motors",
        seq=seq,
        boot_id="boot-1",
        hostname=agent,
        agent_version="1.0",
        created_ms=NOW_MS,
        samples=tuple(
            Sample(f"m{i % 7}", float(i), "percent", NOW_MS + seq, labels_of(i=str(i // 7)))
            for i in range(samples)
        ),
    )


def test_groups_of_every_awkward_size_store_each_row_once(db_url: str) -> None:
    store = open_store(db_url, pool_size=2)
    try:
        store.create_dealer("memory-motors", "Memory Motors", hash_token("t"), NOW)
        # 3 agents, groups whose sample totals cross the 500-row chunks and whose
        # IN lists (batches, agents) have lengths that are not powers of two.
        seq = {"a": 0, "b": 0, "c": 0}
        expected = {"a": 0, "b": 0, "c": 0}
        for group, samples in enumerate((1, 59, 499, 501, 733, 1001)):
            batches = []
            for agent in list(seq)[: 1 + group % 3]:
                seq[agent] += 1
                batches.append(_batch(agent, seq[agent], samples))
                expected[agent] += samples
            results = store.write_batches(batches, NOW)
            assert {r.outcome for r in results} == {WriteOutcome.STORED}
        # Resent: duplicates found through the padded lookup, no new rows.
        again = store.write_batches([_batch("a", 1, 1), _batch("b", 1, 59)], NOW)
        assert {r.outcome for r in again} == {WriteOutcome.DUPLICATE}
        assert {a: store.count_samples(a) for a in seq} == expected
    finally:
        store.close()


def test_the_store_sets_the_sqlite_heap_limit_for_the_process(sqlite_url: str) -> None:
    store = open_store(sqlite_url, pool=PoolSettings(sqlite_heap_limit_mib=96))
    try:
        with store.engine.connect() as connection:
            limit = connection.exec_driver_sql("PRAGMA soft_heap_limit").scalar()
        assert limit == 96 * 1024 * 1024
    finally:
        store.close()
        # Process-wide: leave the default for the tests that follow in this process.
        restore = open_store(sqlite_url, pool=PoolSettings())
        restore.close()


def _cache_kib(store: SQLAlchemyMetricStore, hot_set: bool) -> int:
    with store.engine.connect() as connection:
        connection.execution_options(**{HOT_SET_OPTION: hot_set})
        with connection.begin():
            return -int(connection.exec_driver_sql("PRAGMA cache_size").scalar_one())


def test_only_the_ingest_writer_gets_the_large_page_cache(sqlite_url: str) -> None:
    # One pooled connection, so everything but the writer shares it: its
    # cache is resized for each transaction (the rollups' one-minute 64 MiB
    # caches made the soak's RSS jump, see collector.store.engine).
    store = open_store(sqlite_url, pool_size=1, sqlite_cache_mib=32)
    try:
        assert _cache_kib(store, hot_set=False) == SQLITE_OTHER_CACHE_MIB * 1024
        assert _cache_kib(store, hot_set=True) == 32 * 1024
        assert _cache_kib(store, hot_set=False) == SQLITE_OTHER_CACHE_MIB * 1024
    finally:
        store.close()


def test_the_writer_keeps_its_connection_and_its_cache_between_groups(sqlite_url: str) -> None:
    # Taken from the (LIFO) pool for each group, the writer's connection went
    # to the next Hello or rollup, which shrank its cache; the writer then read
    # its hot set back into fresh memory (collector.store.pinning).
    store = open_store(sqlite_url, pool_size=1, sqlite_cache_mib=32)
    writers: list[object] = []

    def on_begin(connection: Connection) -> None:
        if connection.get_execution_options().get(HOT_SET_OPTION):
            writers.append(connection.connection.dbapi_connection)

    event.listen(store.engine, "begin", on_begin)
    try:
        store.create_dealer("memory-motors", "Memory Motors", hash_token("t"), NOW)
        assert [r.outcome for r in store.write_batches([_batch("a", 1, 10)], NOW)] == [
            WriteOutcome.STORED
        ]
        # Between two groups: an agent says hello, a reader reads.
        store.register_agent(AgentInfo("b", "memory-motors", "b", "1.0", "boot-1"), NOW)
        assert _cache_kib(store, hot_set=False) == SQLITE_OTHER_CACHE_MIB * 1024
        assert store.count_samples("a") == 10
        cursor = writers[0].cursor()  # type: ignore[attr-defined]
        assert cursor.execute("PRAGMA cache_size").fetchone() == (-32 * 1024,)
        assert [r.outcome for r in store.write_batches([_batch("a", 2, 10)], NOW)] == [
            WriteOutcome.STORED
        ]
        assert len(writers) == 2 and writers[0] is writers[1]
        assert store.count_samples("a") == 20
    finally:
        store.close()


@pytest.mark.parametrize(
    ("flags", "env", "expected"),
    [
        ({}, {}, 64),  # the config file
        ({}, {"SQLITE_HEAP_LIMIT_MIB": "32"}, 32),  # env over file
        ({"sqlite_heap_limit_mib": "0"}, {"SQLITE_HEAP_LIMIT_MIB": "32"}, 0),  # flag over env
    ],
)
def test_the_heap_limit_is_an_option_flag_over_env_over_file(
    tmp_path: Path, flags: dict[str, str], env: dict[str, str], expected: int
) -> None:
    config = tmp_path / "dealerpulse.toml"
    config.write_text("[collector]\nsqlite_heap_limit_mib = 64\n")
    values = resolve(COLLECTOR_OPTIONS, flags, env, load_file(config, "collector"))
    pool = CollectorSettings.from_values(values).pool_settings()
    assert pool is not None and pool.sqlite_heap_limit_mib == expected


def test_the_heap_limit_defaults_to_its_documented_budget_and_a_bad_one_is_named() -> None:
    assert PoolSettings.from_env({}).sqlite_heap_limit_mib == DEFAULT_SQLITE_HEAP_LIMIT_MIB == 128
    with pytest.raises(ConfigError, match="sqlite_heap_limit_mib: invalid value '-1'"):
        PoolSettings.from_env({"SQLITE_HEAP_LIMIT_MIB": "-1"})


def test_a_known_agent_reconnecting_leaves_the_writers_cache_valid(sqlite_url: str) -> None:
    # In WAL mode a connection drops its page cache when another one has
    # committed a change; PRAGMA data_version tells a connection just that.
    store = open_store(sqlite_url, pool_size=2)
    try:
        store.create_dealer("memory-motors", "Memory Motors", hash_token("t"), NOW)
        agent = AgentInfo("a", "memory-motors", "a", "1.0", "boot-1")
        store.register_agent(agent, NOW)
        store.record_clock_offset("memory-motors", "a", 1_200)
        with store.engine.connect() as writer:
            raw = writer.connection.dbapi_connection  # outside a transaction: sees every commit
            assert raw is not None

            def version() -> int:
                return int(raw.execute("PRAGMA data_version").fetchone()[0])

            before = version()
            store.register_agent(agent, NOW + timedelta(seconds=10))  # the same agent again
            store.record_clock_offset("memory-motors", "a", 1_250)  # delivery jitter
            assert version() == before
            store.record_clock_offset("memory-motors", "a", 61_000)  # a clock that jumped
            assert version() != before
    finally:
        store.close()
