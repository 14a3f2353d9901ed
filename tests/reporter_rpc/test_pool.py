"""The database pool's idle and connect timeouts, the slow-query log, and how the pool
settings get from the commands' flags, environment and config file to the store."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, exc, text
from sqlalchemy.engine import make_url

from collector.server import run_collector
from collector.settings import COLLECTOR_OPTIONS, CollectorSettings
from collector.store import SQLAlchemyMetricStore, open_store
from collector.store.engine import create_store_engine
from collector.store.pool import (
    PoolSettings,
    install_idle_timeout,
    install_slow_query_log,
)
from dealerpulse.clock import FakeClock
from dealerpulse.config import ConfigError, FileValues, load_file, resolve
from reporter.server import run_reporter
from reporter.settings import REPORTER_OPTIONS, ReporterSettings

QUIET = PoolSettings(idle_timeout_s=0, slow_query_ms=0)
RUN_TIMEOUT_S = 30.0


class SteppingClock(FakeClock):
    """Every reading is ``step_s`` later than the one before: each statement takes that long."""

    def __init__(self, step_s: float) -> None:
        super().__init__()
        self._step_s = step_s

    def monotonic(self) -> float:
        self.advance(self._step_s)
        return super().monotonic()


def _dbapi_connection_id(engine: Engine) -> int:
    with engine.connect() as connection:
        return id(connection.connection.dbapi_connection)


def test_a_connection_idle_longer_than_the_timeout_is_replaced(db_url: str) -> None:
    engine = create_store_engine(db_url, pool=QUIET)
    clock = FakeClock()
    install_idle_timeout(engine, 30.0, clock.monotonic)
    try:
        first = _dbapi_connection_id(engine)
        clock.advance(29)
        assert _dbapi_connection_id(engine) == first
        clock.advance(31)
        replaced = _dbapi_connection_id(engine)
        assert replaced != first
        with engine.connect() as connection:  # the new one works
            assert connection.execute(text("SELECT 1")).scalar() == 1
    finally:
        engine.dispose()


def test_slow_statements_are_logged_with_their_sql_but_never_their_parameters(
    db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    engine = create_store_engine(db_url, pool=QUIET)
    install_slow_query_log(engine, 200.0, SteppingClock(0.25).monotonic)
    try:
        with (
            caplog.at_level(logging.WARNING, logger="collector.store.pool"),
            engine.connect() as connection,
        ):
            connection.execute(text("SELECT :token AS t"), {"token": "dp1.acme.s3cr3t-value"})
        slow = [r for r in caplog.records if "slow query" in r.getMessage()]
        assert slow, caplog.text
        message = slow[-1].getMessage()
        assert "250 ms" in message and "SELECT" in message
        assert "s3cr3t" not in caplog.text
    finally:
        engine.dispose()


def test_fast_statements_are_not_logged(sqlite_url: str, caplog: pytest.LogCaptureFixture) -> None:
    engine = create_store_engine(sqlite_url, pool=QUIET)
    install_slow_query_log(engine, 200.0, SteppingClock(0.05).monotonic)
    try:
        with (
            caplog.at_level(logging.WARNING, logger="collector.store.pool"),
            engine.connect() as connection,
        ):
            connection.execute(text("SELECT 1"))
        assert "slow query" not in caplog.text
    finally:
        engine.dispose()


def test_long_sql_is_cut_to_200_characters(
    sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    engine = create_store_engine(sqlite_url, pool=QUIET)
    install_slow_query_log(engine, 1.0, SteppingClock(1.0).monotonic)
    columns = ", ".join(f"{i} AS column_number_{i}" for i in range(100))
    try:
        with (
            caplog.at_level(logging.WARNING, logger="collector.store.pool"),
            engine.connect() as connection,
        ):
            connection.execute(text(f"SELECT {columns}"))
        shown_sql = caplog.records[-1].getMessage().split("ms): ", 1)[1]
        assert shown_sql.startswith("SELECT 0 AS column_number_0, 1 AS column_number_1")
        assert len(shown_sql) == 200 + len("...") and shown_sql.endswith("...")
    finally:
        engine.dispose()


def test_create_store_engine_takes_the_environment_s_pool_settings(sqlite_url: str) -> None:
    env = {
        "DB_POOL_SIZE": "3",
        "DB_POOL_IDLE_TIMEOUT_S": "7",
        "DB_CONNECT_TIMEOUT_S": "4",
        "SLOW_QUERY_MS": "50",
    }
    settings = PoolSettings.from_env(env, size=20)
    assert settings == PoolSettings(3, 7.0, 4.0, 50.0)
    assert PoolSettings.from_env({}, size=5) == PoolSettings(size=5)
    engine = create_store_engine(sqlite_url, pool=settings)
    try:
        assert engine.pool.size() == 3  # type: ignore[attr-defined]
    finally:
        engine.dispose()
    with pytest.raises(ConfigError, match="db_pool_size: invalid value 'many' from environment"):
        PoolSettings.from_env({"DB_POOL_SIZE": "many"})


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A loopback port that accepts TCP connections and never says a word."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield listener.getsockname()[1]


def test_a_database_that_does_not_answer_fails_the_connect_instead_of_hanging(
    silent_server: int,
) -> None:
    url = make_url("postgresql+psycopg://postgres@127.0.0.1/test").set(port=silent_server)
    engine = create_store_engine(
        url.render_as_string(hide_password=False),
        pool=PoolSettings(connect_timeout_s=2, idle_timeout_s=0, slow_query_ms=0),
    )
    try:
        with pytest.raises(exc.OperationalError, match="timeout"):
            engine.connect().close()
    finally:
        engine.dispose()


# ---- pool settings from the commands' options down to the store


def test_a_pool_size_argument_counts_only_where_db_pool_size_is_not_set(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DB_POOL_SIZE", raising=False)
    store = open_store(sqlite_url, pool_size=3)
    try:
        assert store.pool_settings.size == 3
        assert store.engine.pool.size() == 3  # type: ignore[attr-defined]
    finally:
        store.close()
    monkeypatch.setenv("DB_POOL_SIZE", "6")
    store = open_store(sqlite_url, pool_size=3)
    try:
        assert store.engine.pool.size() == 6  # type: ignore[attr-defined]
    finally:
        store.close()


def test_resolved_pool_settings_are_used_as_they_are(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The command resolved flag > env > file > default already: the store does not
    # consult the environment again.
    monkeypatch.setenv("DB_POOL_SIZE", "6")
    store = open_store(sqlite_url, pool=PoolSettings(size=4, idle_timeout_s=0, slow_query_ms=0))
    try:
        assert store.pool_settings == PoolSettings(size=4, idle_timeout_s=0, slow_query_ms=0)
        assert store.engine.pool.size() == 4  # type: ignore[attr-defined]
    finally:
        store.close()
    with pytest.raises(ValueError, match="pool_size or pool"):
        SQLAlchemyMetricStore(sqlite_url, pool_size=2, pool=QUIET)


def _config(tmp_path: Path, section: str, body: str) -> FileValues:
    path = tmp_path / "dealerpulse.toml"
    path.write_text(f"[{section}]\n{body}\n")
    return load_file(path, section)


@pytest.mark.parametrize(
    ("flags", "env", "size"),
    [
        ({}, {}, 7),  # the config file
        ({}, {"DB_POOL_SIZE": "5"}, 5),  # env over file
        ({"db_pool_size": "3"}, {"DB_POOL_SIZE": "5"}, 3),  # flag over env
    ],
)
def test_the_reporter_and_collector_take_pool_options_flag_over_env_over_file(
    tmp_path: Path, flags: dict[str, str], env: dict[str, str], size: int
) -> None:
    body = "db_pool_size = 7\ndb_pool_idle_timeout_s = 12\nslow_query_ms = 50"
    reporter = ReporterSettings.from_values(
        resolve(REPORTER_OPTIONS, flags, env, _config(tmp_path, "reporter", body))
    )
    collector = CollectorSettings.from_values(
        resolve(COLLECTOR_OPTIONS, flags, env, _config(tmp_path, "collector", body))
    )
    expected = PoolSettings(size=size, idle_timeout_s=12.0, connect_timeout_s=2.0, slow_query_ms=50)
    assert reporter.pool == expected
    assert collector.pool_settings() == expected


def test_pool_options_default_to_the_seed_s_pool_and_a_bad_one_is_named(tmp_path: Path) -> None:
    assert ReporterSettings.from_values(resolve(REPORTER_OPTIONS, {}, {})).pool == PoolSettings()
    # Settings built without resolving leave the pool to the store (and so to the env).
    assert CollectorSettings().pool_settings() is None
    assert ReporterSettings().pool is None
    with pytest.raises(ConfigError, match=r"db_pool_size: invalid value 0 from config file key"):
        resolve(REPORTER_OPTIONS, {}, {}, _config(tmp_path, "reporter", "db_pool_size = 0"))
    with pytest.raises(ConfigError, match="db_connect_timeout_s: invalid value 'soon' from flag"):
        resolve(COLLECTOR_OPTIONS, {"db_connect_timeout_s": "soon"}, {})


async def _wait_for_slow_query_logs(caplog: pytest.LogCaptureFixture) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + RUN_TIMEOUT_S
    while not any("slow query" in r.getMessage() for r in caplog.records):
        if loop.time() > deadline:
            raise AssertionError("no slow-query log line: the flag did not reach the store")
        await asyncio.sleep(0.01)


@pytest.mark.parametrize("command", ["reporter", "collector"])
def test_a_running_server_opens_its_store_with_the_pool_flags(
    command: str,
    sqlite_url: str,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The environment switches the slow-query log off; the flag (1 ns) switches it on
    # for every statement, the schema migration's included.
    env = {"SLOW_QUERY_MS": "0"}
    monkeypatch.setenv("SLOW_QUERY_MS", "0")
    flags = {"listen": "127.0.0.1:0", "db": sqlite_url, "slow_query_ms": "0.000001"}

    async def scenario() -> None:
        stop = asyncio.Event()
        if command == "reporter":
            settings = ReporterSettings.from_values(resolve(REPORTER_OPTIONS, flags, env))
            serving = asyncio.create_task(run_reporter(settings, stop))
        else:
            values = resolve(COLLECTOR_OPTIONS, {**flags, "alerting": False}, env)
            collector = dataclasses.replace(CollectorSettings.from_values(values), run_jobs=False)
            serving = asyncio.create_task(run_collector(collector, stop))
        try:
            await _wait_for_slow_query_logs(caplog)
        finally:
            stop.set()
            await asyncio.wait_for(serving, RUN_TIMEOUT_S)

    with caplog.at_level(logging.WARNING, logger="collector.store.pool"):
        asyncio.run(scenario())
