"""A real CollectorServer on 127.0.0.1:0, running on its own event loop in a thread.

Hypothesis drives plain synchronous test functions, so the fuzz tests talk to
the collector through ordinary blocking gRPC channels while the server runs
on a loop of its own. Row counts are read straight from the SQLite file.
One client channel and one reading connection serve a whole module: a fuzz
run makes hundreds of calls, and a new channel or connection for each one
cost more than the call (a bad input that broke the channel would show up
as a failed ``assert_still_serves`` all the same, since gRPC reconnects).
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from collector.admin import add_dealer
from collector.server import CollectorServer
from collector.settings import CollectorSettings
from collector.store import SQLAlchemyMetricStore, open_store

# Every table an ingest request can write to.
WRITTEN_TABLES = (
    "samples",
    "series",
    "series_latest",
    "ingest_batches",
    "ingest_gaps",
    "api_performance",
    "agents",
)
START_TIMEOUT_S = 30.0


@dataclass
class LiveCollector:
    port: int
    store: SQLAlchemyMetricStore
    db_path: Path
    dealer_id: str
    token: str
    channel: grpc.Channel = field(repr=False)
    _reader: sqlite3.Connection = field(repr=False)

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.token}"),)

    def row_counts(self) -> dict[str, int]:
        """Rows per written table, read through a connection of the test's own.

        One statement, so that the counts come from one snapshot.
        """
        counts = " UNION ALL ".join(f"SELECT COUNT(*) FROM {t}" for t in WRITTEN_TABLES)
        rows = self._reader.execute(counts).fetchall()
        return {t: int(row[0]) for t, row in zip(WRITTEN_TABLES, rows, strict=True)}


@contextmanager
def live_collector(tmp: Path, dealer_name: str = "Fuzz Motors") -> Iterator[LiveCollector]:
    """A collector (no alert or maintenance jobs) with one registered dealer."""
    db_path = tmp / "fuzz.db"
    store = open_store(f"sqlite:///{db_path}", pool_size=5)
    dealer, token = add_dealer(store, dealer_name)
    settings = CollectorSettings(alerting=False, run_jobs=False)
    server = CollectorServer(store, "127.0.0.1:0", settings)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="fuzz-collector", daemon=True)
    thread.start()
    try:
        port = asyncio.run_coroutine_threadsafe(server.start(), loop).result(START_TIMEOUT_S)
        with (
            grpc.insecure_channel(f"127.0.0.1:{port}") as channel,
            closing(sqlite3.connect(db_path, timeout=10, isolation_level=None)) as reader,
        ):
            yield LiveCollector(port, store, db_path, dealer.dealer_id, token, channel, reader)
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(5.0), loop).result(START_TIMEOUT_S)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(START_TIMEOUT_S)
        loop.close()
        store.close()
