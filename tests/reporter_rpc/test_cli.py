"""``dealerpulse reporter``, ``analytics`` and ``report`` against a real reporter server."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from collector.rollup.rollups import RollupRunner
from collector.store import SQLAlchemyMetricStore, open_store
from dealerpulse.cli import main
from dealerpulse.clock import FakeClock
from reporter.server import ReporterServer

from .factories import ACME, NOW, ZENITH, Tokens, add_dealers, fill_acme

START_TIMEOUT_S = 20.0


@pytest.fixture
def filled(sqlite_url: str) -> Iterator[tuple[SQLAlchemyMetricStore, Tokens]]:
    store = open_store(sqlite_url, pool_size=4)
    try:
        tokens = add_dealers(store)
        fill_acme(store)
        RollupRunner(store.engine).run(NOW)
        yield store, tokens
    finally:
        store.close()


@pytest.fixture
def reporter(filled: tuple[SQLAlchemyMetricStore, Tokens]) -> Iterator[str]:
    """The address of a reporter serving from a loop in another thread (the CLI blocks)."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="test-reporter", daemon=True)
    thread.start()
    server = ReporterServer(filled[0], "127.0.0.1:0", clock=FakeClock(NOW))
    try:
        port = asyncio.run_coroutine_threadsafe(server.start(), loop).result(START_TIMEOUT_S)
        yield f"127.0.0.1:{port}"
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(2), loop).result(START_TIMEOUT_S)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(START_TIMEOUT_S)
        loop.close()


def test_analytics_prints_a_readable_table_and_json(
    reporter: str, filled: tuple[SQLAlchemyMetricStore, Tokens], capsys: pytest.CaptureFixture[str]
) -> None:
    token = filled[1].acme
    common = ["analytics", "--reporter", reporter, "--token", token, "--dealer", ACME]
    assert main([*common, "--range", "1h"]) == 0
    table = capsys.readouterr().out
    assert table.startswith("analytics of acme-motors")
    assert "requests 150  errors 2" in table
    assert "/api/vehicles" in table and "RECOMMENDATIONS" in table

    assert main([*common, "--range", "1h", "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["dealerId"] == ACME


def test_a_refused_call_says_why_and_exits_1(
    reporter: str, filled: tuple[SQLAlchemyMetricStore, Tokens], capsys: pytest.CaptureFixture[str]
) -> None:
    token = filled[1].acme
    base = ["analytics", "--reporter", reporter, "--token", token]
    assert main([*base, "--dealer", ZENITH]) == 1
    assert "PERMISSION_DENIED" in capsys.readouterr().err
    assert main([*base, "--dealer", ACME, "--range", "soon"]) == 1
    err = capsys.readouterr().err
    assert "INVALID_ARGUMENT" in err and "timeRange" in err


def test_analytics_needs_a_token(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["analytics", "--reporter", "127.0.0.1:1", "--dealer", ACME])
    assert exited.value.code == 2
    assert "token" in capsys.readouterr().err


def test_report_writes_the_generated_report_to_a_file(
    reporter: str,
    filled: tuple[SQLAlchemyMetricStore, Tokens],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "acme.txt"
    argv = ["report", "--reporter", reporter, "--token", filled[1].acme, "--dealer", ACME]
    assert main([*argv, "--range", "1h", "--format", "text", "--out", str(out)]) == 0
    assert f"written to {out}" in capsys.readouterr().out
    assert "acme" in out.read_text().lower()


def test_reporter_help_names_its_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["reporter", "--help"])
    assert exited.value.code == 0
    shown = capsys.readouterr().out
    for flag in ("--listen", "--db", "--http", "--redis-url", "--cache-ttl-30d-s"):
        assert flag in shown
    assert "REDIS_URL" in shown and "127.0.0.1:50052" in shown
