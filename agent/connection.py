"""The agent's side of a collector connection: channel, credentials, Hello.

Shared by the shipper (every connect) and ``dealerpulse agent --check``.
Requests go out as pre-encoded bytes and replies come back through
:mod:`agent.codec`, so no protobuf object leaves that module.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

import grpc
import grpc.aio

from agent.codec import (
    HELLO_METHOD,
    STREAM_METHOD,
    Ack,
    Hello,
    HelloReply,
    decode_ack,
    decode_hello_reply,
    encode_hello,
)
from agent.errors import ShipperError
from agent.settings import TlsFiles

logger = logging.getLogger(__name__)

RETRY_AFTER_KEY = "retry-after-ms"
# Keepalive pings find a dead connection (NAT timeout, pulled cable) in
# about a minute instead of the OS's hours.
_CHANNEL_OPTIONS: Sequence[tuple[str, int]] = (
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 0),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.max_receive_message_length", 4 * 1024 * 1024),
    ("grpc.max_send_message_length", 16 * 1024 * 1024),
    ("grpc.enable_retries", 0),
    # Bandwidth-delay probing sizes the window of what the agent receives: acks
    # of a few bytes. Each probe ping is work for grpc's thread pool, whose idle
    # workers then poll from 15 ms backing off to 3 s: off, the agent's idle
    # wakeups halved and its CPU fell from 0.35 to 0.21 CPU-s per 240 s at a 10 s
    # interval (/proc per-thread figures, 2026-11-27). Batches go out under the
    # collector's window, which its own probing sizes.
    ("grpc.http2.bdp_probe", 0),
)

AckStream = grpc.aio.StreamStreamCall[bytes, Ack]


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where and how to reach the collector."""

    address: str
    token: str
    tls: TlsFiles | None = None

    def __repr__(self) -> str:
        return f"Endpoint(address={self.address!r}, tls={self.tls is not None})"


def open_channel(endpoint: Endpoint) -> grpc.aio.Channel:
    if endpoint.tls is None:
        return grpc.aio.insecure_channel(endpoint.address, options=_CHANNEL_OPTIONS)
    return grpc.aio.secure_channel(
        endpoint.address, _credentials(endpoint.tls), options=_CHANNEL_OPTIONS
    )


def _credentials(tls: TlsFiles) -> grpc.ChannelCredentials:
    def read(path: object, what: str) -> bytes | None:
        if path is None:
            return None
        try:
            with open(str(path), "rb") as handle:
                return handle.read()
        except OSError as exc:
            raise ShipperError(f"cannot read TLS {what} {path}: {exc}") from exc

    return grpc.ssl_channel_credentials(
        root_certificates=read(tls.ca, "CA file"),
        private_key=read(tls.key, "key file"),
        certificate_chain=read(tls.cert, "certificate file"),
    )


def auth_metadata(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


async def say_hello(
    channel: grpc.aio.Channel, token: str, hello: Hello, timeout_s: float
) -> HelloReply:
    """Authenticate and register; raises grpc.aio.AioRpcError on failure."""
    call = channel.unary_unary(
        HELLO_METHOD, request_serializer=None, response_deserializer=decode_hello_reply
    )
    reply: HelloReply = await call(
        encode_hello(hello), timeout=timeout_s, metadata=auth_metadata(token)
    )
    return reply


def open_stream(channel: grpc.aio.Channel, token: str) -> AckStream:
    """The Ingest.Stream call: write encoded batch bytes, read Acks."""
    method = channel.stream_stream(
        STREAM_METHOD, request_serializer=None, response_deserializer=decode_ack
    )
    stream: AckStream = method(None, metadata=auth_metadata(token))
    return stream


def retry_hint_s(error: grpc.aio.AioRpcError) -> float | None:
    """The server's retry-after-ms trailing metadata, in seconds, if it sent one."""
    for metadata in (error.trailing_metadata(), error.initial_metadata()):
        for item in metadata or ():
            key, value = cast(tuple[str, str | bytes], item)
            if key.lower() == RETRY_AFTER_KEY:
                try:
                    return max(0.0, float(value) / 1000)
                except (TypeError, ValueError):
                    logger.warning("ignoring unreadable %s=%r", RETRY_AFTER_KEY, value)
    return None


def describe(error: grpc.aio.AioRpcError) -> str:
    """A log line's worth of a gRPC error: code name and details, no metadata."""
    return f"{error.code().name}: {error.details() or 'no details'}"
