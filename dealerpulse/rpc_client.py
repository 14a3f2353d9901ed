"""What the CLI's gRPC clients (alerts, reporter) share: the channel and the call."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc


def open_channel(address: str, credentials: grpc.ChannelCredentials | None) -> grpc.Channel:
    """A blocking channel: TLS when ``credentials`` are given, plain otherwise."""
    if credentials is None:
        return grpc.insecure_channel(address)
    return grpc.secure_channel(address, credentials)


def call_unary(
    stub: Any,
    method: str,
    request: Any,
    token: str,
    timeout_s: float,
    error: Callable[[str, str], Exception],
) -> Any:
    """Call ``stub.method`` with the bearer token; a failure becomes ``error(status, details)``."""
    try:
        return getattr(stub, method)(
            request, metadata=(("authorization", f"Bearer {token}"),), timeout=timeout_s
        )
    except grpc.RpcError as exc:
        code = exc.code() if isinstance(exc, grpc.Call) else grpc.StatusCode.UNKNOWN
        details = exc.details() if isinstance(exc, grpc.Call) else str(exc)
        raise error(code.name, details or "") from exc
