"""Interfaces of report delivery, by role. Implementations are named <Tech>ReportSender."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class OutgoingReport:
    report_id: int
    dealer_id: str | None
    title: str
    html: str  # the stored HTML, charts as data URIs
    text: str  # the stored plain-text rendering
    summary: tuple[str, ...]  # a few lines for chat
    url: str | None  # where the reporter serves it, when its public address is known

    @property
    def idempotency_key(self) -> str:
        """Stable across retries and restarts: a repeat is recognisable (Message-ID)."""
        return f"dealerpulse-report-{self.report_id}"


class ReportSender(ABC):
    """Delivers a report to one channel; blocking, called from the jobs' thread.

    ``send`` raises collector.alerting.errors.RetryableSendError or
    PermanentSendError, like the alert notifiers it shares clients with.
    """

    channel: str

    @abstractmethod
    def send(self, report: OutgoingReport) -> None: ...
