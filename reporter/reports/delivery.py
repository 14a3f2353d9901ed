"""Report delivery by email and Slack, on the alerting channels' settings and clients.

Email: multipart/alternative with the plain-text report and the HTML
report, whose charts become inline CID images (multipart/related): mail
clients block data URIs far more often than CID parts. Slack: the title, a
few summary lines and, when REPORTER_PUBLIC_URL is set, a link to the report.
"""

from __future__ import annotations

import base64
import logging
import re
from collections.abc import Sequence
from email.message import EmailMessage
from typing import TYPE_CHECKING, Any, cast

from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web import WebClient
from slack_sdk.webhook import WebhookClient

from collector.alerting.abc import OutgoingMessage
from collector.alerting.errors import RetryableSendError
from collector.alerting.notifiers import SmtpNotifier, SmtpSecurity, classify_http
from reporter.reports.abc import OutgoingReport, ReportSender

if TYPE_CHECKING:
    from collector.settings import CollectorSettings

logger = logging.getLogger(__name__)

EMAIL, SLACK = "email", "slack"
_DATA_URI = re.compile(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"')


def report_url(public_url: str | None, report_id: int) -> str | None:
    """The reporter's HTTP address of a report (GET /api/ai/reports/{id}?format=html)."""
    if not public_url:
        return None
    return f"{public_url.rstrip('/')}/api/ai/reports/{report_id}?format=html"


def inline_images(html: str, key: str) -> tuple[str, list[tuple[str, bytes]]]:
    """The HTML with its data-URI PNGs replaced by ``cid:`` references, and the images."""
    images: list[tuple[str, bytes]] = []

    def to_cid(match: re.Match[str]) -> str:
        cid = f"chart{len(images) + 1}.{key}@dealerpulse"
        images.append((cid, base64.b64decode(match.group(1))))
        return f'src="cid:{cid}"'

    return _DATA_URI.sub(to_cid, html), images


def build_email(report: OutgoingReport, sender: str, recipients: Sequence[str]) -> EmailMessage:
    html, images = inline_images(report.html, report.idempotency_key)
    email = EmailMessage()
    email["Subject"] = report.title
    email["From"] = sender
    email["To"] = ", ".join(recipients)
    email["Message-ID"] = f"<{report.idempotency_key}@dealerpulse>"
    text = report.text if report.url is None else f"{report.text}\nOnline: {report.url}\n"
    email.set_content(text)
    email.add_alternative(html, subtype="html")
    html_part = email.get_body(preferencelist=("html",))
    assert isinstance(html_part, EmailMessage)
    for number, (cid, png) in enumerate(images, start=1):
        html_part.add_related(
            png,
            maintype="image",
            subtype="png",
            cid=f"<{cid}>",
            filename=f"chart-{number}.png",
            disposition="inline",
        )
    return email


class _ReportMailer(SmtpNotifier):
    """SmtpNotifier's connection, TLS, login and error handling, with a report's message."""

    def build(self, message: OutgoingMessage) -> EmailMessage:
        report = cast(OutgoingReport, message.payload["report"])
        return build_email(report, self._sender, self._recipients)


class SmtpReportSender(ReportSender):
    channel = EMAIL

    def __init__(self, **smtp: Any) -> None:
        self._mailer = _ReportMailer(**smtp)

    def __repr__(self) -> str:
        return f"SmtpReportSender({self._mailer!r})"

    def send(self, report: OutgoingReport) -> None:
        message = OutgoingMessage(report.idempotency_key, "report", {"report": report})
        self._mailer.send(message)


def slack_text(report: OutgoingReport) -> str:
    lines = [f"*{report.title}*", *report.summary]
    if report.url:
        lines.append(f"<{report.url}|Open the full report>")
    return "\n".join(lines)


class SlackReportSender(ReportSender):
    """An incoming webhook, or chat.postMessage with a bot token (like SlackNotifier)."""

    channel = SLACK

    def __init__(
        self,
        *,
        webhook_url: str | None = None,
        token: str | None = None,
        channel: str | None = None,
        base_url: str | None = None,
        timeout_s: float = 10.0,
    ) -> None:
        if (webhook_url is None) == (token is None):
            raise ValueError("SlackReportSender: give webhook_url, or token and channel")
        if token is not None and not channel:
            raise ValueError("SlackReportSender: channel is required with a bot token")
        timeout = max(1, round(timeout_s))
        self._channel = channel or ""
        self._webhook = (
            WebhookClient(webhook_url, timeout=timeout, retry_handlers=[]) if webhook_url else None
        )
        self._web = (
            WebClient(
                token=token,
                base_url=base_url or WebClient.BASE_URL,
                timeout=timeout,
                retry_handlers=[],
            )
            if token
            else None
        )

    def __repr__(self) -> str:  # never the token or the webhook secret
        return (
            "SlackReportSender(webhook)"
            if self._webhook
            else f"SlackReportSender(#{self._channel})"
        )

    def send(self, report: OutgoingReport) -> None:
        text = slack_text(report)
        metadata = {
            "event_type": "dealerpulse_report",
            "event_payload": {"idempotency_key": report.idempotency_key},
        }
        try:
            if self._webhook is not None:
                response = self._webhook.send(text=text, metadata=metadata)
                if response.status_code != 200:
                    raise classify_http(
                        "slack webhook", response.status_code, response.headers, response.body
                    )
                return
            assert self._web is not None
            self._web.chat_postMessage(channel=self._channel, text=text, metadata=metadata)
        except SlackApiError as error:
            response = error.response
            detail = str(response.get("error", "")) if isinstance(response.data, dict) else ""
            raise classify_http(
                "slack chat.postMessage", response.status_code, response.headers, detail
            ) from error
        except (OSError, SlackClientError, ValueError) as error:
            raise RetryableSendError(f"slack: {type(error).__name__}: {error}") from error


def senders_from_settings(settings: CollectorSettings) -> list[ReportSender]:
    """Email to REPORT_EMAIL_TO (else SMTP_TO) over the SMTP settings; Slack when report_slack."""
    senders: list[ReportSender] = []
    recipients = settings.report_recipients or settings.smtp_to
    if settings.smtp_host and settings.smtp_from and recipients:
        security = cast(SmtpSecurity, settings.smtp_security)
        senders.append(
            SmtpReportSender(
                host=settings.smtp_host,
                port=settings.smtp_port or (465 if security == "ssl" else 587),
                sender=settings.smtp_from,
                recipients=recipients,
                security=security,
                username=settings.smtp_user,
                password=settings.smtp_password,
            )
        )
    if settings.report_slack and settings.slack_webhook_url:
        senders.append(SlackReportSender(webhook_url=settings.slack_webhook_url))
    elif settings.report_slack and settings.slack_bot_token:
        senders.append(
            SlackReportSender(
                token=settings.slack_bot_token,
                channel=settings.slack_channel,
                base_url=settings.slack_api_url,
            )
        )
    logger.info("report channels: %s", ", ".join(map(repr, senders)) or "none")
    return senders
