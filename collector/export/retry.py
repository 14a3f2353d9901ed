"""When to retry an export, and after how long: bounded, jittered, server hints first.

Retryable, as the OTLP specification lists them: UNAVAILABLE, RESOURCE_EXHAUSTED,
DEADLINE_EXCEEDED, ABORTED, OUT_OF_RANGE, DATA_LOSS and CANCELLED (when the
server cancelled, not us). A ``google.rpc.RetryInfo`` in the status details
(``grpc-status-details-bin`` trailer) replaces our own backoff, capped.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import grpc
from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2, status_pb2

RETRYABLE = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.OUT_OF_RANGE,
        grpc.StatusCode.DATA_LOSS,
        grpc.StatusCode.CANCELLED,
    }
)
STATUS_DETAILS_KEY = "grpc-status-details-bin"
RETRY_INFO_TYPE = "google.rpc.RetryInfo"


@dataclass(frozen=True, slots=True)
class ExportRetry:
    """attempts counts the first try; delays double from base_delay_s up to max_delay_s."""

    attempts: int = 6
    base_delay_s: float = 1.0
    max_delay_s: float = 30.0
    # A server asking for more than this is answered sooner; the queue keeps moving.
    max_retry_info_s: float = 60.0

    def __post_init__(self) -> None:
        if self.attempts < 1 or self.base_delay_s < 0 or self.max_delay_s < self.base_delay_s:
            raise ValueError("attempts >= 1 and 0 <= base_delay_s <= max_delay_s")

    def delay_s(self, attempt: int, hint_s: float | None, rng: random.Random) -> float:
        """The wait after failed attempt number ``attempt`` (1-based)."""
        if hint_s is not None:
            return min(hint_s, self.max_retry_info_s)
        backoff = min(self.max_delay_s, self.base_delay_s * 2.0 ** (attempt - 1))
        # +-20 % jitter: exporters failing together do not come back together.
        return float(backoff * rng.uniform(0.8, 1.2))


def retry_hint_s(trailing_metadata: Iterable[object] | None) -> float | None:
    """The RetryInfo delay a server put in the status details, if any."""
    for key, value in _pairs(trailing_metadata):
        if key != STATUS_DETAILS_KEY or not isinstance(value, bytes):
            continue
        try:
            status = status_pb2.Status.FromString(value)
        except DecodeError:
            return None
        for detail in status.details:
            info = error_details_pb2.RetryInfo()
            if detail.TypeName() == RETRY_INFO_TYPE and detail.Unpack(info):
                delay = info.retry_delay
                return max(0.0, float(delay.seconds) + delay.nanos / 1e9)
    return None


def _pairs(metadata: Iterable[object] | None) -> Iterator[tuple[object, object]]:
    """grpc.aio yields (key, value) tuples; grpc's type stubs describe key/value objects."""
    for item in metadata or ():
        if isinstance(item, tuple) and len(item) == 2:
            yield item[0], item[1]
        else:
            yield getattr(item, "key", None), getattr(item, "value", None)


def is_retryable(code: grpc.StatusCode) -> bool:
    return code in RETRYABLE
