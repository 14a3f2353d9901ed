"""Keep configured secrets out of every log line, whoever writes it.

Our own code never logs a secret, but libraries may: slack_sdk's webhook
client logs the full webhook URL -- whose path *is* the secret -- at DEBUG.
:func:`redact_secrets_in_logs` puts a filter on the root logger's handlers
(a filter on a logger would miss records of child loggers) that replaces every
known secret value in the formatted message and traceback with ``***``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

logger = logging.getLogger(__name__)

MASK = "***"
# Shorter values would mask ordinary words; real secrets are long.
MIN_SECRET_LEN = 8


class SecretRedactor(logging.Filter):
    def __init__(self) -> None:
        super().__init__()
        self._secrets: set[str] = set()

    def add(self, secrets: Iterable[str | None]) -> None:
        self._secrets |= {s for s in secrets if s and len(s) >= MIN_SECRET_LEN}

    def redact(self, text: str) -> str:
        # Longest first, so that a secret containing another is masked whole.
        for secret in sorted(self._secrets, key=len, reverse=True):
            text = text.replace(secret, MASK)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._secrets:
            return True
        message = record.getMessage()
        cleaned = self.redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        return True


_REDACTOR = SecretRedactor()


def redact_secrets_in_logs(secrets: Iterable[str | None]) -> None:
    """Mask these values in everything the root logger's handlers emit from now on."""
    _REDACTOR.add(secrets)
    for handler in logging.getLogger().handlers:
        if _REDACTOR not in handler.filters:
            handler.addFilter(_REDACTOR)
