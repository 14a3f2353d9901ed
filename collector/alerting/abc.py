"""Interfaces of alerting, by role. Implementations are named <Tech>Notifier."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    """One outbox row on its way to a channel."""

    # Stable across retries and restarts; the channel shows it (Message-ID, metadata).
    idempotency_key: str
    kind: str
    payload: Mapping[str, Any] = field(default_factory=dict)
    # What the channel called the episode's firing message (a Slack ts): replies thread on it.
    thread_ref: str | None = None


@dataclass(frozen=True, slots=True)
class Receipt:
    """What the channel called the message, if it says (Slack: the message ts)."""

    ref: str | None = None


class Notifier(ABC):
    """Delivers a message to one channel; blocking, called from the dispatcher's thread.

    ``send`` raises RetryableSendError (timeouts, 5xx, 429 with the server's
    Retry-After) or PermanentSendError (other refusals).
    """

    @abstractmethod
    def send(self, message: OutgoingMessage) -> Receipt: ...

    def find_sent(self, message: OutgoingMessage) -> Receipt | None:
        """The receipt of an earlier delivery of ``message``, where the channel can tell.

        The dispatcher asks before a resend, so that a crash between a send
        and its record does not repeat the message. None: not found or cannot tell.
        """
        return None
