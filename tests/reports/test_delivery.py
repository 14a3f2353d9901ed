"""Reports delivered through a real SMTP server (aiosmtpd) and a local Slack."""

from __future__ import annotations

from datetime import UTC, datetime, time
from email.message import EmailMessage

from alerting.conftest import Mailbox
from alerting.fake_slack import WEBHOOK_PATH, Answer, FakeSlack
from sqlalchemy import select

from collector.store import SQLAlchemyMetricStore
from collector.store.schema import reports
from dealerpulse.clock import FakeClock
from reporter.reports import ReportGenerator, ReportJobs, ReportJobSettings, Schedule
from reporter.reports.abc import ReportSender
from reporter.reports.content import ReportOptions
from reporter.reports.delivery import SlackReportSender, SmtpReportSender
from reporter.reports.schedule import DAILY

from .helpers import CountingAnalytics, add_dealers

SETTINGS = ReportJobSettings(
    schedules=(Schedule(DAILY, time(6)),),
    timezone="UTC",
    public_url="https://pulse.example.test/",
)
NOW = datetime(2026, 3, 10, 12, tzinfo=UTC)


def _jobs(store: SQLAlchemyMetricStore, *senders: ReportSender) -> ReportJobs:
    clock = FakeClock(NOW)
    generator = ReportGenerator(store.engine, CountingAnalytics(), clock, ReportOptions())
    return ReportJobs(store.engine, clock, generator, senders, SETTINGS)


def _mailer(smtp_server: Mailbox) -> SmtpReportSender:
    return SmtpReportSender(
        host="127.0.0.1",
        port=smtp_server.port,
        sender="pulse@example.test",
        recipients=["owner@acme.example.test"],
        security="none",
    )


def _delivery(store: SQLAlchemyMetricStore) -> tuple[str, list[str], int]:
    query = select(reports.c.delivery, reports.c.delivered_channels, reports.c.delivery_attempts)
    with store.engine.connect() as connection:
        row = connection.execute(query).one()
    return row.delivery, list(row.delivered_channels), row.delivery_attempts


def test_email_has_html_with_inline_charts_and_a_text_alternative(
    store: SQLAlchemyMetricStore, smtp_server: Mailbox
) -> None:
    add_dealers(store, "acme-motors")
    run = _jobs(store, _mailer(smtp_server)).run_once()
    assert len(run.made) == 1 and run.delivered == run.made and run.failures == 0
    (email,) = smtp_server.messages
    assert email["Subject"] == "Daily performance report: acme-motors, 2026-03-09"
    assert email["Message-ID"] == f"<dealerpulse-report-{run.made[0]}@dealerpulse>"
    assert email.get_content_type() == "multipart/alternative"
    text = email.get_body(preferencelist=("plain",))
    html = email.get_body(preferencelist=("html",))
    assert isinstance(text, EmailMessage) and isinstance(html, EmailMessage)
    assert "Total requests:        48,000" in text.get_content()
    assert f"pulse.example.test/api/ai/reports/{run.made[0]}?format=html" in text.get_content()
    markup = html.get_content()
    assert "data:image" not in markup  # charts travel as parts, not data URIs
    images = [part for part in email.walk() if part.get_content_type() == "image/png"]
    assert len(images) == 4
    for image in images:
        cid = str(image["Content-ID"]).strip("<>")
        assert f'src="cid:{cid}"' in markup
        payload = image.get_payload(decode=True)
        assert isinstance(payload, bytes) and payload.startswith(b"\x89PNG")
    assert _delivery(store) == ("sent", ["email"], 1)
    # A later run sends nothing again.
    assert _jobs(store, _mailer(smtp_server)).run_once().delivered == ()
    assert len(smtp_server.messages) == 1


def test_slack_gets_the_summary_and_a_link(store: SQLAlchemyMetricStore, slack: FakeSlack) -> None:
    add_dealers(store, "acme-motors")
    run = _jobs(store, SlackReportSender(webhook_url=slack.webhook_url)).run_once()
    (body,) = slack.received(WEBHOOK_PATH)
    text = body["text"]
    assert "*Daily performance report: acme-motors, 2026-03-09*" in text
    assert "Requests: 48,000, error rate 0.05%, uptime 99.95%" in text
    assert "Response time: avg 181.2 ms, peak 1,250.0 ms" in text
    assert "Recommendation: Cache GET /api/inventory" in text
    link = f"<https://pulse.example.test/api/ai/reports/{run.made[0]}?format=html|"
    assert link in text
    assert (
        body["metadata"]["event_payload"]["idempotency_key"] == f"dealerpulse-report-{run.made[0]}"
    )


def test_a_failed_channel_is_retried_without_resending_the_others(
    store: SQLAlchemyMetricStore, smtp_server: Mailbox, slack: FakeSlack
) -> None:
    add_dealers(store, "acme-motors")
    slack.script(WEBHOOK_PATH, Answer(500, "internal_error"))
    senders = (_mailer(smtp_server), SlackReportSender(webhook_url=slack.webhook_url))
    first = _jobs(store, *senders).run_once()
    assert first.delivered == () and first.failures == 1
    assert _delivery(store) == ("pending", ["email"], 1)
    second = _jobs(store, *senders).run_once()
    assert second.delivered == first.made
    assert _delivery(store) == ("sent", ["email", "slack"], 2)
    assert len(smtp_server.messages) == 1 and len(slack.received(WEBHOOK_PATH)) == 2


def test_a_permanent_refusal_stops_the_retries(
    store: SQLAlchemyMetricStore, slack: FakeSlack
) -> None:
    add_dealers(store, "acme-motors")
    slack.script(WEBHOOK_PATH, Answer(404, "no_service"))
    sender = SlackReportSender(webhook_url=slack.webhook_url)
    assert _jobs(store, sender).run_once().failures == 1
    assert _delivery(store)[0] == "failed"
    assert _jobs(store, sender).run_once().delivered == ()
    assert len(slack.received(WEBHOOK_PATH)) == 1
