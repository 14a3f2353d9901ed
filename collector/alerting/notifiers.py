"""Slack (slack-sdk) and email (smtplib) notifiers.

Neither retries on its own: the dispatcher owns retries and backoff, so each
failure is classified into RetryableSendError (timeouts, connection errors,
5xx, 429 with Retry-After) or PermanentSendError (other 4xx, refused
recipients) and the outbox row records it.
"""

from __future__ import annotations

import logging
import smtplib
import ssl
from collections.abc import Mapping, Sequence
from email.message import EmailMessage
from typing import Any, Literal

from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web import WebClient
from slack_sdk.webhook import WebhookClient

from collector.alerting.abc import Notifier, OutgoingMessage, Receipt
from collector.alerting.errors import PermanentSendError, RetryableSendError, SendError
from collector.alerting.render import GROUP_KIND, group_lines, headline, render

logger = logging.getLogger(__name__)

METADATA_EVENT = "dealerpulse_alert"
# How far back find_sent looks in a Slack channel's history.
_HISTORY_LIMIT = 200


def classify_http(what: str, status: int, headers: Mapping[str, Any], detail: str) -> SendError:
    """The SendError for an HTTP answer that is not a success."""
    message = f"{what}: HTTP {status}: {detail}"
    if status == 429 or status >= 500:
        return RetryableSendError(message, retry_after_s=_retry_after(headers))
    return PermanentSendError(message)


def _retry_after(headers: Mapping[str, Any]) -> float | None:
    for name, value in headers.items():
        if name.lower() == "retry-after":
            raw = value[0] if isinstance(value, list) and value else value
            try:
                return max(0.0, float(raw))
            except (TypeError, ValueError):
                return None  # an HTTP date: the dispatcher's own backoff applies
    return None


class SlackNotifier(Notifier):
    """Posts to Slack through an incoming webhook, or chat.postMessage with a bot token.

    With the Web API, a resolved message is a reply in the thread of the
    episode's firing message, every message carries the idempotency key in
    its metadata, and :meth:`find_sent` looks for it in the channel history.
    """

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
            raise ValueError("SlackNotifier: give webhook_url, or token and channel (not both)")
        if token is not None and not channel:
            raise ValueError("SlackNotifier: channel is required with a bot token")
        self._channel = channel or ""
        self._webhook: WebhookClient | None = None
        self._web: WebClient | None = None
        timeout = max(1, round(timeout_s))
        if webhook_url is not None:
            self._webhook = WebhookClient(webhook_url, timeout=timeout, retry_handlers=[])
        else:
            self._web = WebClient(
                token=token,
                base_url=base_url or WebClient.BASE_URL,
                timeout=timeout,
                retry_handlers=[],
            )

    def __repr__(self) -> str:  # never the token or the webhook secret
        how = "webhook" if self._webhook is not None else f"web api #{self._channel}"
        return f"SlackNotifier({how})"

    def send(self, message: OutgoingMessage) -> Receipt:
        text = _slack_text(message)
        try:
            if self._webhook is not None:
                return self._send_webhook(self._webhook, message, text)
            assert self._web is not None
            return self._post(self._web, message, text)
        except SlackApiError as error:
            response = error.response
            detail = str(response.get("error", "")) if isinstance(response.data, dict) else ""
            raise classify_http(
                "slack chat.postMessage", response.status_code, response.headers, detail
            ) from error
        except (OSError, SlackClientError, ValueError) as error:
            # Timeouts and refused connections (OSError), unreadable answers.
            raise RetryableSendError(f"slack: {type(error).__name__}: {error}") from error

    def _send_webhook(self, client: WebhookClient, message: OutgoingMessage, text: str) -> Receipt:
        response = client.send(text=text, metadata=_metadata(message))
        if response.status_code == 200:
            return Receipt()
        raise classify_http("slack webhook", response.status_code, response.headers, response.body)

    def _post(self, client: WebClient, message: OutgoingMessage, text: str) -> Receipt:
        thread = message.thread_ref if message.kind != "firing" else None
        response = client.chat_postMessage(
            channel=self._channel,
            text=text,
            thread_ts=thread,
            reply_broadcast=bool(thread) and message.kind == "resolved",
            metadata=_metadata(message),
        )
        return Receipt(str(response.get("ts")) if response.get("ts") else None)

    def find_sent(self, message: OutgoingMessage) -> Receipt | None:
        if self._web is None:
            return None  # an incoming webhook cannot be asked
        try:
            history = self._web.conversations_history(
                channel=self._channel, limit=_HISTORY_LIMIT, include_all_metadata=True
            )
        except (SlackApiError, SlackClientError, OSError, ValueError) as error:
            logger.warning("could not read the Slack history to check a resend: %s", error)
            return None
        wanted = _keys(message)
        for posted in history.get("messages") or []:
            metadata = posted.get("metadata") or {}
            payload = metadata.get("event_payload") or {}
            carried = {payload.get("idempotency_key"), *(payload.get("keys") or [])}
            # A group message carries each alert's key: any one of them means it arrived.
            if wanted & carried:
                return Receipt(posted.get("ts"))
        return None


def _keys(message: OutgoingMessage) -> set[str]:
    return {message.idempotency_key, *(message.payload.get("keys") or [])}


def _metadata(message: OutgoingMessage) -> dict[str, Any]:
    event: dict[str, Any] = {"idempotency_key": message.idempotency_key}
    if message.kind == GROUP_KIND:
        event["keys"] = list(message.payload.get("keys") or [])
    return {"event_type": METADATA_EVENT, "event_payload": event}


def _slack_text(message: OutgoingMessage) -> str:
    payload = message.payload
    if message.kind == GROUP_KIND:
        lines = [headline(payload), *(f"• {line}" for line in group_lines(payload))]
        if payload.get("dashboard_url"):
            lines.append(f"<{payload['dashboard_url']}|dashboard>")
        return "\n".join(lines)
    lines = [headline(payload), str(payload.get("message", ""))]
    if payload.get("since"):
        lines.append(f"since {payload['since']}")
    if payload.get("dashboard_url"):
        lines.append(f"<{payload['dashboard_url']}|dashboard>")
    return "\n".join(line for line in lines if line)


SmtpSecurity = Literal["none", "starttls", "ssl"]


class SmtpNotifier(Notifier):
    """Sends a multipart (text + HTML) email; the Message-ID is the idempotency key."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        sender: str,
        recipients: Sequence[str],
        security: SmtpSecurity = "starttls",
        username: str | None = None,
        password: str | None = None,
        timeout_s: float = 10.0,
        ssl_context: ssl.SSLContext | None = None,
        template: str = "performance-alert",
    ) -> None:
        if not recipients:
            raise ValueError("SmtpNotifier: recipients must name at least one address")
        if security not in ("none", "starttls", "ssl"):
            raise ValueError(
                f"SmtpNotifier: security must be none, starttls or ssl, not {security!r}"
            )
        self._host, self._port, self._sender = host, port, sender
        self._recipients = list(recipients)
        self._security = security
        self._login = (username, password) if username else None
        self._timeout_s = timeout_s
        self._ssl_context = ssl_context
        self._template = template

    def __repr__(self) -> str:
        return f"SmtpNotifier({self._host}:{self._port}, {len(self._recipients)} recipients)"

    def build(self, message: OutgoingMessage) -> EmailMessage:
        rendered = render(message.payload, message.idempotency_key, self._template)
        email = EmailMessage()
        email["Subject"] = rendered.subject
        email["From"] = self._sender
        email["To"] = ", ".join(self._recipients)
        email["Message-ID"] = f"<{message.idempotency_key}@dealerpulse>"
        email.set_content(rendered.text)
        email.add_alternative(rendered.html, subtype="html")
        return email

    def send(self, message: OutgoingMessage) -> Receipt:
        email = self.build(message)
        try:
            with self._connect() as client:
                if self._login is not None:
                    client.login(self._login[0], self._login[1] or "")
                refused = client.send_message(email)
        except smtplib.SMTPResponseException as error:
            text = f"smtp: {error.smtp_code} {error.smtp_error!r}"
            if 400 <= error.smtp_code < 500:
                raise RetryableSendError(text) from error
            raise PermanentSendError(text) from error
        except smtplib.SMTPRecipientsRefused as error:
            text = f"smtp: every recipient refused: {error.recipients}"
            if all(400 <= code < 500 for code, _ in error.recipients.values()):
                raise RetryableSendError(text) from error  # greylisting, a full mailbox
            raise PermanentSendError(text) from error
        except (OSError, smtplib.SMTPException) as error:
            raise RetryableSendError(f"smtp: {type(error).__name__}: {error}") from error
        if refused:
            logger.warning("smtp server refused some recipients: %s", sorted(refused))
        return Receipt(email["Message-ID"])

    def _connect(self) -> smtplib.SMTP:
        if self._security == "ssl":
            context = self._ssl_context or ssl.create_default_context()
            return smtplib.SMTP_SSL(
                self._host, self._port, timeout=self._timeout_s, context=context
            )
        client = smtplib.SMTP(self._host, self._port, timeout=self._timeout_s)
        if self._security == "starttls":
            client.starttls(context=self._ssl_context or ssl.create_default_context())
        return client
