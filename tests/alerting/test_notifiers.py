"""Notifiers against real protocol servers: slack-sdk's clients on a local Slack, aiosmtpd."""

from __future__ import annotations

from typing import Any

import pytest
from aiosmtpd.controller import Controller

from collector.alerting.abc import OutgoingMessage
from collector.alerting.errors import PermanentSendError, RetryableSendError
from collector.alerting.notifiers import (
    METADATA_EVENT,
    SlackNotifier,
    SmtpNotifier,
    SmtpSecurity,
)

from .conftest import Certificate, Mailbox, free_loopback_port
from .fake_slack import HISTORY, POST_MESSAGE, WEBHOOK_PATH, Answer, FakeSlack

PAYLOAD: dict[str, Any] = {
    "episode_id": 7,
    "kind": "firing",
    "rule": "builtin:response_time",
    "dealer_id": "acme-motors",
    "agent_id": "agent-1",
    "labels": {"endpoint": "/api/leads"},
    "severity": "warning",
    "metric": "api.response_time_ms",
    "aggregation": "avg",
    "window_s": 300,
    "comparator": ">",
    "value": 242.5,
    "threshold": 200.0,
    "since": "2026-03-01T12:00:00+00:00",
    "message": "builtin:response_time: avg(api.response_time_ms) over 300 s is 242.5",
    "dashboard_url": "https://pulse.invalid/dealers/acme-motors",
}
FIRING = OutgoingMessage("dp-7-firing-1-slack", "firing", PAYLOAD)


def _web(slack: FakeSlack) -> SlackNotifier:
    return SlackNotifier(token="xoxb-test", channel="C0ALERTS", base_url=slack.api_url)


def test_webhook_posts_the_alert(slack: FakeSlack) -> None:
    SlackNotifier(webhook_url=slack.webhook_url).send(FIRING)
    (body,) = slack.received(WEBHOOK_PATH)
    assert "[FIRING] warning: builtin:response_time on acme-motors/agent-1" in body["text"]
    assert "242.5 > 200" in body["text"] and "since 2026-03-01" in body["text"]
    assert body["metadata"]["event_payload"] == {"idempotency_key": FIRING.idempotency_key}


@pytest.mark.parametrize(
    ("answer", "error", "retry_after_s"),
    [
        (Answer(429, "rate_limited", (("Retry-After", "7"),)), RetryableSendError, 7.0),
        (Answer(500, "internal_error"), RetryableSendError, None),
        (Answer(404, "channel_not_found"), PermanentSendError, None),
    ],
)
def test_webhook_failures_are_classified(
    slack: FakeSlack, answer: Answer, error: type[Exception], retry_after_s: float | None
) -> None:
    slack.script(WEBHOOK_PATH, answer)
    with pytest.raises(error, match=str(answer.status)) as raised:
        SlackNotifier(webhook_url=slack.webhook_url).send(FIRING)
    assert getattr(raised.value, "retry_after_s", None) == retry_after_s
    assert len(slack.received(WEBHOOK_PATH)) == 1  # no retries of its own


def test_web_api_threads_the_resolved_and_carries_the_key(slack: FakeSlack) -> None:
    notifier = _web(slack)
    receipt = notifier.send(FIRING)
    resolved = OutgoingMessage("dp-7-resolved-2-slack", "resolved", PAYLOAD, receipt.ref)
    notifier.send(resolved)
    first, second = slack.received(POST_MESSAGE)
    assert first["channel"] == "C0ALERTS" and "thread_ts" not in first
    assert first["metadata"] == {
        "event_type": METADATA_EVENT,
        "event_payload": {"idempotency_key": "dp-7-firing-1-slack"},
    }
    assert receipt.ref is not None and second["thread_ts"] == receipt.ref


@pytest.mark.parametrize(
    ("answer", "error", "named"),
    [
        (
            Answer(429, {"ok": False, "error": "ratelimited"}, (("Retry-After", "3"),)),
            RetryableSendError,
            "429",
        ),
        (Answer(500, {"ok": False, "error": "fatal_error"}), RetryableSendError, "500"),
        (
            Answer(404, {"ok": False, "error": "channel_not_found"}),
            PermanentSendError,
            "channel_not_found",
        ),
        (
            Answer(200, {"ok": False, "error": "channel_not_found"}),
            PermanentSendError,
            "channel_not_found",
        ),
    ],
)
def test_web_api_failures_are_classified(
    slack: FakeSlack, answer: Answer, error: type[Exception], named: str
) -> None:
    slack.script(POST_MESSAGE, answer)
    with pytest.raises(error, match=named):
        _web(slack).send(FIRING)


def test_find_sent_recognises_a_delivered_message_by_its_key(slack: FakeSlack) -> None:
    notifier = _web(slack)
    assert notifier.find_sent(FIRING) is None
    receipt = notifier.send(FIRING)
    found = notifier.find_sent(FIRING)
    assert found is not None and found.ref == receipt.ref
    assert len(slack.received(HISTORY)) == 2


def test_an_unreachable_slack_is_retryable() -> None:
    notifier = SlackNotifier(webhook_url="http://127.0.0.1:9/hook", timeout_s=2)
    with pytest.raises(RetryableSendError):
        notifier.send(FIRING)


def test_a_notifier_needs_one_way_to_slack() -> None:
    with pytest.raises(ValueError, match="webhook_url"):
        SlackNotifier()
    with pytest.raises(ValueError, match="channel"):
        SlackNotifier(token="xoxb-test")


def _smtp(mailbox: Mailbox) -> SmtpNotifier:
    return SmtpNotifier(
        host="127.0.0.1",
        port=mailbox.port,
        sender="pulse@dealerpulse.invalid",
        recipients=["ops@acme.invalid", "cto@acme.invalid"],
        security="none",
    )


def test_smtp_sends_text_and_html_with_the_key_as_message_id(smtp_server: Mailbox) -> None:
    message = OutgoingMessage("dp-7-firing-1-email", "firing", PAYLOAD)
    receipt = _smtp(smtp_server).send(message)

    (email,) = smtp_server.messages
    assert email["Message-ID"] == "<dp-7-firing-1-email@dealerpulse>" == receipt.ref
    assert smtp_server.envelopes == [
        ("pulse@dealerpulse.invalid", ["ops@acme.invalid", "cto@acme.invalid"])
    ]
    # A long Subject is folded; unfolding leaves the fold's space in front.
    assert email["Subject"].strip().startswith("[FIRING] warning: builtin:response_time")
    text_part = email.get_body(preferencelist=("plain",))
    html_part = email.get_body(preferencelist=("html",))
    assert text_part is not None and html_part is not None
    text, html = text_part.get_content(), html_part.get_content()
    for part in (text, html):
        assert "acme-motors" in part and "builtin:response_time" in part
        assert "242.5" in part and "&gt; 200" in html and "> 200" in text
        assert "2026-03-01T12:00:00+00:00" in part
        assert "endpoint=/api/leads" in part
    assert '<a href="https://pulse.invalid/dealers/acme-motors">' in html
    assert "Dashboard: https://pulse.invalid/dealers/acme-motors" in text


def test_html_escapes_what_agents_report(smtp_server: Mailbox) -> None:
    payload = dict(PAYLOAD, labels={"endpoint": "/api/<script>"})
    _smtp(smtp_server).send(OutgoingMessage("dp-8-firing-1-email", "firing", payload))
    html_part = smtp_server.messages[0].get_body(preferencelist=("html",))
    assert html_part is not None
    assert "<script>" not in html_part.get_content()


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        ("550 5.1.1 no such mailbox", PermanentSendError),
        ("451 4.3.0 try later", RetryableSendError),
    ],
)
def test_smtp_refusals_are_classified(
    smtp_server: Mailbox, answer: str, error: type[Exception]
) -> None:
    smtp_server.refuse_rcpt_with = answer
    with pytest.raises(error, match=answer[:3]):
        _smtp(smtp_server).send(FIRING)
    assert smtp_server.messages == []


def test_an_unreachable_smtp_server_is_retryable() -> None:
    notifier = SmtpNotifier(
        host="127.0.0.1", port=9, sender="a@b.invalid", recipients=["c@d.invalid"], timeout_s=2
    )
    with pytest.raises(RetryableSendError):
        notifier.send(FIRING)


def test_smtp_starttls(tls_smtp_server: Mailbox, loopback_certificate: Certificate) -> None:
    def notifier(security: SmtpSecurity) -> SmtpNotifier:
        return SmtpNotifier(
            host="127.0.0.1",
            port=tls_smtp_server.port,
            sender="pulse@dealerpulse.invalid",
            recipients=["ops@acme.invalid"],
            security=security,
            ssl_context=loopback_certificate.client_context(),
        )

    with pytest.raises(PermanentSendError, match="530"):  # the server insists on TLS
        notifier("none").send(FIRING)
    notifier("starttls").send(FIRING)
    (email,) = tls_smtp_server.messages
    assert email["Message-ID"] == f"<{FIRING.idempotency_key}@dealerpulse>"


def test_smtp_over_implicit_tls(loopback_certificate: Certificate) -> None:
    mailbox = Mailbox(port=free_loopback_port())
    controller = Controller(
        mailbox,
        hostname="127.0.0.1",
        port=mailbox.port,
        ready_timeout=10,
        ssl_context=loopback_certificate.server_context(),
    )
    controller.start()
    try:
        SmtpNotifier(
            host="127.0.0.1",
            port=mailbox.port,
            sender="pulse@dealerpulse.invalid",
            recipients=["ops@acme.invalid"],
            security="ssl",
            ssl_context=loopback_certificate.client_context(),
        ).send(FIRING)
    finally:
        controller.stop()
    (email,) = mailbox.messages
    assert email["Message-ID"] == f"<{FIRING.idempotency_key}@dealerpulse>"
