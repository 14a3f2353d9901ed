"""The role of a metrics exporter: forward what the collector stored to somewhere else."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

from dealerpulse.model import MetricBatch


class ExportError(Exception):
    """Base of the exporter's errors."""


@dataclass(frozen=True, slots=True)
class ExportStats:
    """Counted in batches unless the name says points.

    Conservation: ``offered = exported + dropped_queue_full + failed +
    dropped_at_shutdown + queued + in_flight``; nothing offered goes unaccounted.
    """

    offered: int = 0
    exported: int = 0
    # The queue was full: the OLDEST queued batch made room for the new one.
    dropped_queue_full: int = 0
    # Given up after the retries, or refused by the endpoint for good.
    failed: int = 0
    # Still queued or in flight when the graceful stop ran out of time.
    dropped_at_shutdown: int = 0
    queued: int = 0
    in_flight: int = 0
    exported_points: int = 0
    # Points the endpoint accepted the request for but said it dropped (partial success).
    rejected_points: int = 0
    requests: int = 0
    retries: int = 0
    # The last failed attempt's status, also while retrying: why export lags.
    last_error: str = ""


class MetricExporter(ABC):
    """Takes committed batches without ever blocking the caller; sends them in the background."""

    @abstractmethod
    async def start(self) -> None:
        """Begin sending, on the running event loop."""

    @abstractmethod
    def offer(self, batches: Sequence[MetricBatch]) -> None:
        """Queue batches for export; safe from any thread, never blocks, never raises."""

    @abstractmethod
    async def stop(self, timeout_s: float) -> bool:
        """Send what is queued for at most timeout_s; True when everything was settled."""

    @abstractmethod
    def stats(self) -> ExportStats:
        """A consistent snapshot of the counters."""
