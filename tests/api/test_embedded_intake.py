"""``dealerpulse up``: the local agent runs its intake, so an app on this host is measured."""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agent.aggregate import RequestRecord
from agent.instrument import RecordSink
from collector.store import open_store
from dealerpulse.embedded import LOCAL_DEALER_ID, local_intake, run_embedded


@pytest.fixture
def state_dir() -> Iterator[Path]:
    directory = Path(tempfile.mkdtemp(prefix="dp-up-", dir="/tmp"))  # short: a unix socket
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


def test_intake_address_follows_the_environment(state_dir: Path) -> None:
    assert str(local_intake(state_dir, {})) == str(state_dir / "intake.sock")
    assert local_intake(state_dir, {"DEALERPULSE_INTAKE": "off"}) is None
    udp = local_intake(state_dir, {"DEALERPULSE_INTAKE": "udp://127.0.0.1:9999"})
    assert str(udp) == "udp://127.0.0.1:9999"
    with pytest.raises(ValueError, match="DEALERPULSE_INTAKE"):
        local_intake(state_dir, {"DEALERPULSE_INTAKE": "udp://8.8.8.8:53"})
    deep = state_dir / ("x" * 120)
    assert len(str(local_intake(deep, {}))) <= 100  # too long for sun_path: moved


def test_up_measures_an_app_on_this_host(
    state_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("DEALERPULSE_INTAKE", raising=False)
    db_url = f"sqlite:///{state_dir / 'dp.db'}"
    socket_path = state_dir / "intake.sock"
    began = datetime.now(UTC) - timedelta(seconds=1)
    caplog.set_level(logging.INFO, logger="dealerpulse.embedded")

    async def scenario() -> None:
        stop = asyncio.Event()
        up = asyncio.create_task(
            run_embedded(
                listen="127.0.0.1:0",
                db_url=db_url,
                state_dir=state_dir,
                interval_s=0.2,
                stop=stop,
            )
        )
        try:
            await wait_for(socket_path.exists, "the intake socket", up)
            sink = RecordSink(socket_path)
            now_ms = int(time.time() * 1000)
            for n in range(50):
                record = RequestRecord("/api/vehicles/{id}", "GET", 200, 10.0 + n, now_ms)
                assert sink.offer(record)
            assert await asyncio.to_thread(sink.flush, 10)
            sink.close()
            await wait_for(lambda: stored(db_url, began) == 50, "50 requests stored", up)
        finally:
            stop.set()
            await asyncio.wait_for(up, 30)

    asyncio.run(asyncio.wait_for(scenario(), 60))
    assert not socket_path.exists()
    [line] = [r.getMessage() for r in caplog.records if "DealerPulse is up" in r.getMessage()]
    assert f"DEALERPULSE_INTAKE={socket_path}" in line


def stored(db_url: str, began: datetime) -> int:
    store = open_store(db_url)
    try:
        end = datetime.now(UTC) + timedelta(hours=1)
        return sum(r.stat.count for r in store.query_endpoint_stats(LOCAL_DEALER_ID, began, end))
    finally:
        store.close()


async def wait_for(condition: object, what: str, up: asyncio.Task[None]) -> None:
    assert callable(condition)
    deadline = time.monotonic() + 30
    while not await asyncio.to_thread(condition):
        if up.done():
            up.result()  # raises what stopped it
            raise AssertionError(f"dealerpulse up stopped before {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)
