"""The alerting errors: one small hierarchy, foreign errors wrapped with ``from``."""

from __future__ import annotations


class AlertingError(Exception):
    """Base of the alerting errors."""


class RuleError(AlertingError, ValueError):
    """A rule that cannot be evaluated; the message names the field."""


class SendError(AlertingError):
    """A notifier could not deliver a message."""


class RetryableSendError(SendError):
    """Worth retrying later: a timeout, a 5xx, a 429 (with the server's hint, if any)."""

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class PermanentSendError(SendError):
    """Retrying will not help (a 4xx such as channel_not_found, a refused recipient)."""
