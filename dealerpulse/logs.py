"""Logging setup for the CLI: one format, and tokens scrubbed from every record."""

from __future__ import annotations

import logging
import re
import sys
from typing import TextIO

# Matches dealer tokens (dealerpulse.tokens) wherever they might slip into a message.
_TOKEN_RE = re.compile(r"dp1\.([a-z0-9-]+)\.[A-Za-z0-9_-]+")
_ADMIN_TOKEN_RE = re.compile(r"dp1-admin\.[A-Za-z0-9_-]+")
# Other secrets known at run time (API keys of integrations), replaced verbatim.
_SECRETS: set[str] = set()


class RedactTokens(logging.Filter):
    """Last line of defence: code never logs tokens, but a foreign exception might."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "dp1" in message or _SECRETS:
            record.msg = scrub(message)
            record.args = None
        return True


def scrub(text: str) -> str:
    text = _ADMIN_TOKEN_RE.sub("dp1-admin.***", text)
    # A copy: another thread may register a secret meanwhile.
    for secret in sorted(_SECRETS.copy(), key=len, reverse=True):
        text = text.replace(secret, "***")
    return _TOKEN_RE.sub(r"dp1.\1.***", text)


def register_secret(value: str) -> None:
    """Scrub this exact value from every log record from now on (an API key, a password)."""
    if value:
        _SECRETS.add(value)


class _CurrentStderr(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever sys.stderr is now, not the one at setup time.

    The CLI can run in-process (tests, embedding); a stream captured at setup
    and closed later would turn every later log line into a logging error.
    """

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _value: TextIO) -> None:
        pass


def setup(level: str = "INFO") -> None:
    handler = _CurrentStderr()
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%Y-%m-%dT%H:%M:%S")
    )
    handler.addFilter(RedactTokens())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Alembic narrates every plugin and context at INFO; its news is the migration we log.
    logging.getLogger("alembic").setLevel(max(logging.WARNING, root.level))
    # APScheduler logs every run of every job at INFO (several a second); our jobs
    # log what they did, and a job's failure still comes through as a warning.
    logging.getLogger("apscheduler").setLevel(max(logging.WARNING, root.level))
    # uvicorn's access log would repeat every dashboard refresh.
    logging.getLogger("uvicorn.access").setLevel(max(logging.WARNING, root.level))
