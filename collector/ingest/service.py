"""The ``dealerpulse.v1.Ingest`` servicer: authentication, Hello, and the streams."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import grpc
from google.protobuf.message import DecodeError

from collector.abc import MetricStore, StoreError, UnknownDealer
from collector.ingest import codec
from collector.ingest.auth import DealerDirectory, NotAuthenticated, TokenAuthenticator
from collector.ingest.errors import StoreUnavailable
from collector.ingest.limits import DealerRateLimiter, SeriesLimiter
from collector.ingest.stream import (
    StreamConfig,
    StreamDeps,
    StreamEnd,
    StreamSession,
    WriterPrincipal,
    not_a_writer,
)
from collector.ingest.validate import validate_agent
from collector.ingest.writer import BatchWriter
from collector.store.errors import AgentConflict
from dealerpulse.clock import Clock, unix_ms
from dealerpulse.v1 import ingest_pb2 as pb
from dealerpulse.v1 import ingest_pb2_grpc as pb_grpc

logger = logging.getLogger(__name__)

HelloContext = grpc.aio.ServicerContext[pb.HelloRequest, pb.HelloResponse]
StreamContext = grpc.aio.ServicerContext[pb.Batch, pb.Ack]
SHUTTING_DOWN = "collector shutting down; reconnect to another collector or retry shortly"
INGEST_SERVICE_NAME = "dealerpulse.v1.Ingest"


class IngestService(pb_grpc.IngestServicer):
    def __init__(
        self,
        store: MetricStore,
        writer: BatchWriter,
        *,
        clock: Clock,
        config: StreamConfig | None = None,
        auth_ttl_s: float = 10.0,
    ) -> None:
        self._store = store
        self._clock = clock
        self._config = config or StreamConfig()
        self._authenticator = TokenAuthenticator(store, clock, ttl_s=auth_ttl_s)
        self._dealers = DealerDirectory(store, clock, ttl_s=auth_ttl_s)
        config = self._config
        rate_limiter = (
            DealerRateLimiter(config.dealer_rate_limit, clock) if config.dealer_rate_limit else None
        )
        self._deps = StreamDeps(
            writer,
            self._authenticator,
            self._dealers,
            clock,
            config,
            SeriesLimiter(store, config.max_series_per_agent),
            rate_limiter,
            offsets_store=store,
        )
        self._sessions: set[StreamSession] = set()
        self._no_sessions = asyncio.Event()
        self._no_sessions.set()
        self._shutting_down = False

    @property
    def open_streams(self) -> int:
        return len(self._sessions)

    def add_to_server(self, server: grpc.aio.Server) -> None:
        """Register Ingest like the generated add_IngestServicer_to_server, except that
        Hello takes raw bytes: an undecodable request is INVALID_ARGUMENT, not UNKNOWN.
        (Stream's undecodable messages are handled by the session.)"""
        handlers = {
            "Hello": grpc.unary_unary_rpc_method_handler(
                self._hello_bytes,
                request_deserializer=None,
                response_serializer=pb.HelloResponse.SerializeToString,
            ),
            "Stream": grpc.stream_stream_rpc_method_handler(
                self.Stream,
                request_deserializer=pb.Batch.FromString,
                response_serializer=pb.Ack.SerializeToString,
            ),
        }
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(INGEST_SERVICE_NAME, handlers),)
        )

    async def _hello_bytes(self, data: bytes, context: HelloContext) -> pb.HelloResponse:
        try:
            request = pb.HelloRequest.FromString(data)
        except DecodeError as exc:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"request: not a dealerpulse.v1.HelloRequest message ({exc})",
            )
        return await self.Hello(request, context)

    async def Hello(self, request: pb.HelloRequest, context: HelloContext) -> pb.HelloResponse:
        principal = await self._authenticate(context)
        agent = codec.decode_hello(request, principal.dealer_id)
        rejection = validate_agent(agent, self._config.limits)
        if rejection is not None:
            await context.abort(rejection.code, rejection.message)
        try:
            last_seq = await asyncio.to_thread(self._store.register_agent, agent, self._clock.now())
            name = await self._dealers.name_of(principal.dealer_id)
        except UnknownDealer:
            await context.abort(
                grpc.StatusCode.NOT_FOUND, f"dealer {principal.dealer_id!r} is not registered"
            )
        except AgentConflict as exc:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, f"agent_id: {exc}")
        except (StoreError, StoreUnavailable) as exc:
            logger.warning("Hello of agent %r failed: %s", agent.agent_id, exc)
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"store unavailable: {exc}")
        logger.info(
            "agent %r of dealer %s connected from %s (last committed seq %s)",
            agent.agent_id,
            principal.dealer_id,
            context.peer(),
            last_seq,
        )
        return codec.encode_hello_response(
            principal.dealer_id, name or "", last_seq, unix_ms(self._clock)
        )

    async def Stream(
        self, request_iterator: AsyncIterator[pb.Batch], context: StreamContext
    ) -> AsyncIterator[pb.Ack]:
        if self._shutting_down:
            await context.abort(grpc.StatusCode.UNAVAILABLE, SHUTTING_DOWN)
        principal = await self._authenticate(context)
        if self._shutting_down:  # began while this call was authenticating
            await context.abort(grpc.StatusCode.UNAVAILABLE, SHUTTING_DOWN)
        session = StreamSession(principal, context.peer(), self._deps)
        self._sessions.add(session)
        self._no_sessions.clear()
        try:
            async with contextlib.aclosing(session.run(request_iterator)) as outgoing:
                async for item in outgoing:
                    if isinstance(item, StreamEnd):
                        if item.code is not None:
                            await context.abort(item.code, item.message)
                        return
                    yield item
        finally:
            self._sessions.discard(session)
            if not self._sessions:
                self._no_sessions.set()

    def begin_shutdown(self) -> None:
        """Refuse new streams; open ones stop reading and close once their acks are out."""
        self._shutting_down = True
        for session in list(self._sessions):
            session.stop_receiving()

    async def wait_streams_closed(self, timeout_s: float) -> bool:
        try:
            await asyncio.wait_for(self._no_sessions.wait(), timeout=max(0.0, timeout_s))
        except TimeoutError:
            return False
        return True

    async def _authenticate(self, context: HelloContext | StreamContext) -> WriterPrincipal:
        """The caller, who must hold a dealer token: viewers and admins write no metrics."""
        try:
            principal = await self._authenticator.authenticate(context.invocation_metadata())
        except NotAuthenticated as exc:
            logger.info("unauthenticated call from %s: %s", context.peer(), exc)
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, str(exc))
        except StoreUnavailable as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
        if not principal.may_ingest() or principal.dealer_id is None:
            logger.info("refused ingest from %s: %s may not write", context.peer(), principal.name)
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, not_a_writer(principal))
        return WriterPrincipal(principal, principal.dealer_id)
