"""A real ReporterServer on 127.0.0.1:0 and a client of it, for the reporter tests."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import grpc
import pytest

from collector.store import SQLAlchemyMetricStore
from dealerpulse.clock import FakeClock
from dealerpulse.v1 import reporter_pb2_grpc
from reporter.cache import ResultCache
from reporter.server import ReporterServer
from reporter.settings import ReporterSettings

CALL_TIMEOUT_S = 20.0


class Client:
    """Calls of one token (None: no token at all)."""

    def __init__(self, stub: reporter_pb2_grpc.ReporterStub, token: str | None) -> None:
        self.stub, self.token = stub, token

    async def __call__(self, method: str, request: Any) -> Any:
        metadata = () if self.token is None else (("authorization", f"Bearer {self.token}"),)
        call: Callable[..., Awaitable[Any]] = getattr(self.stub, method)
        return await asyncio.wait_for(
            call(request, metadata=metadata, timeout=CALL_TIMEOUT_S), CALL_TIMEOUT_S + 5
        )

    async def refused(self, method: str, request: Any) -> tuple[grpc.StatusCode, str]:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await self(method, request)
        return refused.value.code(), refused.value.details() or ""


ClientOf = Callable[[str | None], Client]
Scenario = Callable[[ReporterServer, ClientOf], Awaitable[None]]


def serve(
    store: SQLAlchemyMetricStore,
    clock: FakeClock,
    scenario: Scenario,
    settings: ReporterSettings | None = None,
    cache: ResultCache | None = None,
) -> None:
    """Run ``scenario(server, client_of)`` against a started server, then stop it."""

    async def run() -> None:
        server = ReporterServer(store, "127.0.0.1:0", settings, clock, cache=cache)
        port = await server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                stub = reporter_pb2_grpc.ReporterStub(channel)  # type: ignore[no-untyped-call]
                await scenario(server, lambda token: Client(stub, token))
        finally:
            await server.stop(5)

    asyncio.run(run())


@pytest.fixture
def sqlite_store(start_migrated: None, sqlite_url: str) -> Iterator[SQLAlchemyMetricStore]:
    """A store on SQLite only, for behaviour that does not depend on the backend
    (the backend-dependent tests take ``store``, over SQLite and PostgreSQL)."""
    from collector.store import open_store

    opened = open_store(sqlite_url, pool_size=4)
    try:
        yield opened
    finally:
        opened.close()
