"""The ingest path's exceptions: a small hierarchy the service maps to acks."""

from __future__ import annotations

from collector.ingest.codec import Rejection


class IngestError(Exception):
    """Base of the ingest path's errors."""


class Overloaded(IngestError):
    """The writer's queue is full; the batch was not taken. Resend later."""

    def __init__(self, retry_after_s: float, queued_samples: int) -> None:
        super().__init__(
            f"collector overloaded ({queued_samples} samples queued); "
            f"retry after {retry_after_s:.2f} s"
        )
        self.retry_after_s = retry_after_s
        self.queued_samples = queued_samples


class StoreUnavailable(IngestError):
    """The store did not commit the batch (it may be restarting). Nothing was acked."""


class WriterClosed(StoreUnavailable):
    """The writer is shutting down and takes no more batches."""


class BatchRefused(IngestError):
    """The store refused this one batch for good (e.g. its agent belongs to another dealer)."""

    def __init__(self, rejection: Rejection) -> None:
        super().__init__(rejection.message)
        self.rejection = rejection
