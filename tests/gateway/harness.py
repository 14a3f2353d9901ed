"""A store filled with known data, the app served by a real uvicorn, and a small client."""

from __future__ import annotations

import dataclasses
import hashlib
import http.client
import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from starlette.types import ASGIApp

from agent.aggregate import EndpointAggregator, RequestRecord
from collector.rollup.rollups import RollupRunner
from collector.store import SQLAlchemyMetricStore
from dealerpulse.clock import FakeClock, from_unix_ms, to_unix_ms
from dealerpulse.model import AgentCounters, EndpointStat, MetricBatch, Sample, labels_of
from dealerpulse.threaded import serving_in_thread
from dealerpulse.tokens import hash_token, new_admin_token, new_token
from reporter.http.server import HttpServer

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
ACME, ZENITH = "acme-motors", "zenith-auto"
# Two minutes before NOW: inside the reporter's 5-minute real-time window.
T0 = to_unix_ms(NOW) - 120_000
# /api/inventory: 100 requests of 10..109 ms, 2 of them 500s; /api/leads: 50 of 300 ms.
INVENTORY_MS = [float(10 + i) for i in range(100)]
LEADS_MS = [300.0] * 50
CPU, MEMORY = 42.5, 61.0
SPOOL_BYTES, SPOOL_BATCHES = 4096, 3


@dataclass(frozen=True, slots=True)
class Tokens:
    acme: str
    zenith: str
    admin: str


def fill_store(store: SQLAlchemyMetricStore) -> Tokens:
    """Two dealers with tokens, an admin token, and ACME's known traffic and host figures."""
    tokens = Tokens(new_token(ACME), new_token(ZENITH), new_admin_token())
    store.create_dealer(ACME, "Acme Motors", hash_token(tokens.acme), NOW)
    store.create_dealer(ZENITH, "Zenith Auto", hash_token(tokens.zenith), NOW)
    store.add_token(None, hash_token(tokens.admin), NOW, role="admin")
    store.write_batches([acme_batch()], NOW)
    # The analytics read rollups, which the collector's job computes; run it once now.
    RollupRunner(store.engine).run(NOW)
    return tokens


def endpoint_stats() -> tuple[EndpointStat, ...]:
    aggregator = EndpointAggregator(clock=FakeClock(from_unix_ms(T0)), source="middleware")
    for i, ms in enumerate(INVENTORY_MS):
        status = 500 if i in (10, 20) else 200
        error = "upstream timeout" if status == 500 else ""
        aggregator.record(RequestRecord("/api/inventory", "GET", status, ms, T0 + i, error))
    for i, ms in enumerate(LEADS_MS):
        aggregator.record(RequestRecord("/api/leads", "POST", 200, ms, T0 + 200 + i, ""))
    return tuple(aggregator.drain(T0 + 60_000))


def acme_batch(seq: int = 1) -> MetricBatch:
    samples = tuple(
        Sample(name, value, "percent", T0 + offset, labels_of())
        for offset in (0, 10_000, 20_000)
        for name, value in (("cpu.percent", CPU), ("memory.percent", MEMORY))
    )
    built = MetricBatch(
        agent_id="acme-agent-1",
        dealer_id=ACME,
        seq=seq,
        boot_id="boot-a",
        hostname="dms-01",
        agent_version="0.1.0",
        created_ms=T0,
        samples=samples,
        endpoints=endpoint_stats(),
        counters=AgentCounters(
            generated_samples=len(samples), spool_bytes=SPOOL_BYTES, spool_batches=SPOOL_BATCHES
        ),
    )
    content = dataclasses.replace(built, digest=b"")
    return dataclasses.replace(built, digest=hashlib.sha256(repr(content).encode()).digest())


# ---- serving


@contextmanager
def served(app: ASGIApp, timeout_s: float = 15.0) -> Iterator[int]:
    """Serve ``app`` with a real uvicorn on 127.0.0.1:<free port> in a thread; yield the port."""
    with serving_in_thread(
        lambda: HttpServer(app, "127.0.0.1:0", shutdown_grace_s=1.0), timeout_s, "the HTTP server"
    ) as port:
        yield port


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    headers: Mapping[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def data(self) -> Any:
        document = self.json
        assert document["success"] is True, document
        return document["data"]

    @property
    def error_code(self) -> str:
        document = self.json
        assert document["success"] is False, document
        return str(document["error"]["code"])


class Client:
    def __init__(self, port: int, token: str | None = None) -> None:
        self.port = port
        self.token = token

    def as_(self, token: str | None) -> Client:
        return Client(self.port, token)

    def get(self, path: str) -> Answer:
        return self.request("GET", path)

    def post(self, path: str, body: Any = None) -> Answer:
        return self.request("POST", path, body)

    def request(self, method: str, path: str, body: Any = None) -> Answer:
        headers = {"Accept": "application/json"}
        if self.token is not None:
            headers["Authorization"] = f"Bearer {self.token}"
        payload = None
        if body is not None:
            payload = body if isinstance(body, bytes) else json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            connection.request(method, path, body=payload, headers=headers)
            response = connection.getresponse()
            return Answer(
                response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
            )
        finally:
            connection.close()
