"""The reporter's server: the Reporter gRPC service (with health and reflection),
and an optional HTTP part in the same asyncio loop.

The HTTP part (the gateway of :mod:`reporter.http`) plugs in through
``http``: a callable that receives the :class:`ReporterCore` and returns
an object with ``async start() -> int`` (the bound port) and
``async stop(grace_s)``. :func:`run_reporter` builds it when the ``http``
setting is given (see :func:`http_part`); tests may pass their own.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

from collector.sentry import init_sentry
from collector.store import SQLAlchemyMetricStore, open_store
from dealerpulse.clock import Clock, SystemClock
from dealerpulse.config import ConfigError, default_database_url, redact_url
from dealerpulse.v1 import reporter_pb2_grpc
from reporter.cache import InProcessResultCache, RedisResultCache, ResultCache
from reporter.core import ReporterCore
from reporter.service import REPORTER_SERVICE, ReporterService
from reporter.settings import ReporterSettings

logger = logging.getLogger(__name__)

HEALTH_SERVICE = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name


class ReporterError(Exception):
    """The reporter cannot start (address in use, unreadable TLS files...)."""


class HttpPart(Protocol):
    async def start(self) -> int: ...

    async def stop(self, grace_s: float) -> None: ...


HttpFactory = Callable[[ReporterCore], HttpPart]


def make_cache(settings: ReporterSettings, clock: Clock) -> ResultCache:
    """Redis when ``redis_url`` is set (shared by several reporters), else in-process."""
    if settings.redis_url:
        logger.info("result cache: Redis at %s", redact_url(settings.redis_url))
        return RedisResultCache.from_url(settings.redis_url, clock)
    return InProcessResultCache(clock, settings.cache_max_entries)


class ReporterServer:
    def __init__(
        self,
        store: SQLAlchemyMetricStore,
        listen: str = "127.0.0.1:0",
        settings: ReporterSettings | None = None,
        clock: Clock | None = None,
        *,
        cache: ResultCache | None = None,
        http: HttpFactory | None = None,
    ) -> None:
        self._store = store
        self._listen = listen
        self._settings = settings or ReporterSettings()
        self._clock = clock or SystemClock()
        cache = cache or make_cache(self._settings, self._clock)
        self.core = ReporterCore(store, self._clock, self._settings, cache)
        self._http_factory = http
        self._http: HttpPart | None = None
        self._server: grpc.aio.Server | None = None
        self._health: HealthServicer | None = None
        self._port = 0
        self.http_port: int | None = None

    @property
    def port(self) -> int:
        return self._port

    async def start(self) -> int:
        """Bind, serve, start the HTTP part if any; return the gRPC port."""
        if self._server is not None:
            raise RuntimeError("ReporterServer.start() called twice")
        service = ReporterService(
            self.core, self._store, self._clock, self._settings.auth_cache_ttl_s
        )
        health = HealthServicer()
        server = grpc.aio.server()
        reporter_pb2_grpc.add_ReporterServicer_to_server(service, server)  # type: ignore[no-untyped-call]
        health_pb2_grpc.add_HealthServicer_to_server(health, server)
        reflection.enable_server_reflection(
            [REPORTER_SERVICE, HEALTH_SERVICE, reflection.SERVICE_NAME], server
        )
        self._port = self._bind(server)
        await server.start()
        for name in ("", REPORTER_SERVICE):
            await health.set(name, health_pb2.HealthCheckResponse.SERVING)
        self._server, self._health = server, health
        logger.info("reporter listening on %s (port %s)", self._listen, self._port)
        if self._http_factory is not None:
            try:
                self._http = self._http_factory(self.core)
                self.http_port = await self._http.start()
            except BaseException:
                await self.stop(0.0)
                raise
        return self._port

    def _bind(self, server: grpc.aio.Server) -> int:
        settings = self._settings
        try:
            if settings.tls_cert is not None and settings.tls_key is not None:
                credentials = grpc.ssl_server_credentials(
                    [(settings.tls_key.read_bytes(), settings.tls_cert.read_bytes())]
                )
                port = server.add_secure_port(self._listen, credentials)
            else:
                port = server.add_insecure_port(self._listen)
        except OSError as exc:
            raise ReporterError(f"cannot read a TLS file: {exc}") from exc
        except RuntimeError as exc:  # grpc raises RuntimeError when it cannot bind
            raise ReporterError(f"cannot listen on {self._listen}: {exc}") from exc
        if port == 0:
            raise ReporterError(f"cannot listen on {self._listen} (address in use?)")
        return port

    async def stop(self, grace_s: float | None = None) -> None:
        """Stop taking calls, let open ones finish within ``grace_s``, close the cache."""
        server, health = self._server, self._health
        if server is None or health is None:
            return
        self._server = None
        grace_s = self._settings.shutdown_grace_s if grace_s is None else grace_s
        await health.enter_graceful_shutdown()
        http, self._http = self._http, None
        if http is not None:
            await http.stop(grace_s)
        await server.stop(grace_s)
        self.core.close()
        logger.info("reporter stopped")


def http_part(
    settings: ReporterSettings, store: SQLAlchemyMetricStore, clock: Clock
) -> HttpFactory:
    """The HTTP gateway of :mod:`reporter.http` on ``settings.http``."""
    try:
        from reporter.http.app import create_app
        from reporter.http.server import HttpServer
        from reporter.http.settings import HttpSettings
    except ImportError as exc:
        raise ConfigError(f"http: the HTTP gateway is not available here: {exc}") from exc
    http_settings = HttpSettings.from_values(settings.values)
    listen = settings.http or ""

    def factory(core: ReporterCore) -> HttpPart:
        app = create_app(core, store, http_settings, clock)
        tls = (
            (settings.tls_cert, settings.tls_key)
            if settings.tls_cert and settings.tls_key
            else None
        )
        return _StoppableHttp(HttpServer(app, listen, settings.shutdown_grace_s, tls))

    return factory


class _StoppableHttp:
    """:class:`reporter.http.server.HttpServer` (its own grace period) as an HttpPart."""

    def __init__(self, server: Any) -> None:
        self._server = server

    async def start(self) -> int:
        port: int = await self._server.start()
        return port

    async def stop(self, grace_s: float) -> None:
        await self._server.stop()


async def run_reporter(settings: ReporterSettings | Mapping[str, Any], stop: asyncio.Event) -> None:
    """Open the store, serve until ``stop`` is set, then shut down gracefully."""
    if not isinstance(settings, ReporterSettings):
        settings = ReporterSettings.from_values(settings)
    # Only when SENTRY_DSN is set (sentry-sdk is imported only then).
    init_sentry(os.environ, "reporter")
    url = settings.db or default_database_url()
    logger.info("reporter opening store %s", redact_url(url))
    store = await asyncio.to_thread(open_store, url, pool=settings.pool)
    try:
        clock = SystemClock()
        http = http_part(settings, store, clock) if settings.http else None
        server = ReporterServer(store, settings.listen, settings, clock, http=http)
        await server.start()
        try:
            await stop.wait()
            logger.info("reporter shutting down")
        finally:
            await server.stop(settings.shutdown_grace_s)
    finally:
        await asyncio.to_thread(store.close)
