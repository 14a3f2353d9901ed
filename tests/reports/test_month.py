"""A report over a known synthetic month, end to end, on SQLite and PostgreSQL.

The month (tests/reports/month.py) goes through the store's batch writer,
the real rollup job runs until no dirty marks remain, and the reporter's
generator makes an ad hoc 30-day report from the rollups with the real
query layer and analysis. The report's figures must be what was inserted;
the planted problems must be recommended, with evidence, and nothing else;
the other dealer must be absent; the HTML must be valid and carry the four
charts; the email must arrive through a real SMTP server.
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from statistics import fmean
from typing import Any

import pytest
from alerting.conftest import Mailbox
from sqlalchemy import func, select

from collector.rollup.rollups import RollupRunner, RollupSettings
from collector.store import SQLAlchemyMetricStore
from collector.store.schema import rollup_dirty
from dealerpulse.clock import FakeClock
from reporter.model import ReportFormat, ReportRecord, TimeRange
from reporter.reports import ReportGenerator, store_analytics
from reporter.reports.abc import OutgoingReport
from reporter.reports.delivery import SmtpReportSender
from reporter.reports.render import summary_lines

from . import month
from .helpers import PNG_MAGIC, html_problems, png_images
from .month import ACME, END, INVENTORY, LEADS, OTHER, START, STEP_AT, ZENITH, Month

RANGE = TimeRange(START, END)
GENERATED_AT = END + timedelta(hours=2)
# Ranges of a day: a month of rollups in a few dozen transactions instead of
# thousands (the range size is the job's setting; the rollup tests cover it).
ROLLUP = RollupSettings(max_range_minutes=1440, join_gap_minutes=60)
MAX_ROLLUP_RUNS = 5
# DDSketch's relative accuracy (dealerpulse.sketch).
SKETCH_ACCURACY = 0.01


def _dirty_marks(store: SQLAlchemyMetricStore) -> int:
    with store.engine.connect() as connection:
        return int(connection.scalar(select(func.count()).select_from(rollup_dirty)) or 0)


def _roll_up(store: SQLAlchemyMetricStore) -> None:
    runner = RollupRunner(store.engine, ROLLUP)
    for _ in range(MAX_ROLLUP_RUNS):
        if _dirty_marks(store) == 0:
            return
        runner.run(END)
    assert _dirty_marks(store) == 0, f"dirty marks left after {MAX_ROLLUP_RUNS} rollup runs"


def _bounds(values: list[float], q: float) -> tuple[float, float]:
    """The exact q-quantile's neighbours, widened by the sketch's accuracy."""
    ordered = sorted(values)
    rank = q * (len(ordered) - 1)
    low, high = ordered[math.floor(rank)], ordered[math.ceil(rank)]
    return low * (1 - SKETCH_ACCURACY), high * (1 + SKETCH_ACCURACY)


def _assert_percentiles(row: dict[str, Any], values: list[float]) -> None:
    for q, key in ((0.5, "p50ResponseTime"), (0.95, "p95ResponseTime"), (0.99, "p99ResponseTime")):
        low, high = _bounds(values, q)
        assert low <= row[key] <= high, f"{key} {row[key]} outside [{low}, {high}]"


def _assert_summary(document: dict[str, Any], inserted: Month) -> None:
    summary, latencies = document["summary"], inserted.latencies()
    errors = inserted.traffic[LEADS].errors
    # 714 hours with traffic (6 of 720 down), 54 calls an hour; an error every other hour.
    assert (len(latencies), errors) == (38_556, 357)
    assert summary["totalRequests"] == len(latencies)
    assert summary["errorCount"] == errors
    assert summary["errorRate"] == pytest.approx(100 * errors / len(latencies), rel=1e-12)
    assert summary["avgResponseTime"] == pytest.approx(fmean(latencies), rel=1e-12)
    assert summary["peakResponseTime"] == max(latencies) == 185.0
    _assert_percentiles(summary, latencies)
    assert summary["throughput"] == pytest.approx(len(latencies) / (30 * 1440), rel=1e-12)
    assert summary["uptime"] == pytest.approx(100 * 714 / 720, rel=1e-12)


def _assert_endpoints(document: dict[str, Any], inserted: Month) -> None:
    rows = {row["endpoint"]: row for row in document["endpoints"]}
    assert list(rows) == [INVENTORY, LEADS]  # busiest first; nothing of the other dealer
    for route, method in ((INVENTORY, "GET"), (LEADS, "POST")):
        row, sent = rows[route], inserted.traffic[route]
        assert (row["method"], row["requests"], row["errorCount"]) == (
            method,
            len(sent.latencies),
            sent.errors,
        )
        assert row["avgResponseTime"] == pytest.approx(fmean(sent.latencies), rel=1e-12)
        assert row["peakResponseTime"] == max(sent.latencies)
        assert row["callsPerHour"] == pytest.approx(len(sent.latencies) / 720, rel=1e-12)
        assert row["lastError"] == sent.last_error
        _assert_percentiles(row, sent.latencies)
    assert rows[LEADS]["errorRate"] == pytest.approx(100 * 357 / 12_852, rel=1e-12)
    assert rows[INVENTORY]["errorRate"] == 0.0 and rows[INVENTORY]["lastErrorAt"] is None


def _assert_resources(document: dict[str, Any], inserted: Month) -> None:
    found = {(r["name"], json.dumps(r["labels"])): r for r in document["resources"]}
    expected = {
        ("cpu.percent", "{}"): inserted.cpu,
        ("memory.percent", "{}"): inserted.memory,
        ("disk.percent", '{"mount": "/"}'): inserted.disk,
    }
    assert set(found) == set(expected)  # the other dealer's 97 % CPU is not among them
    for key, values in expected.items():
        assert found[key]["avg"] == pytest.approx(fmean(values), rel=1e-9), key
        assert found[key]["peak"] == pytest.approx(max(values), rel=1e-12), key
        assert found[key]["latest"] == pytest.approx(values[-1], rel=1e-12), key


def _assert_recommendations(document: dict[str, Any]) -> None:
    found = {item["type"]: item for item in document["recommendations"]}
    # The planted problems, and nothing the data does not show (no cache, CPU, load ones).
    assert set(found) == {"response_time_regression", "memory_leak"}
    regression = found["response_time_regression"]["evidence"]
    assert found["response_time_regression"]["endpoint"] == f"GET {INVENTORY}"
    changed_at = datetime.fromisoformat(regression["changed_at"])
    assert abs(changed_at - STEP_AT) <= timedelta(hours=1)  # within one step of the series
    # Hourly means of the inventory calls: 60-85 ms plus 0-10 ms before, 150-175 ms after.
    assert regression["mean_before_ms"] == pytest.approx(77.5, rel=0.01)
    assert regression["mean_after_ms"] == pytest.approx(167.5, rel=0.01)
    assert regression["p_value"] < 0.001
    leak = found["memory_leak"]["evidence"]
    # 40 % to 80 % in 720 hours; 100 % is 360 hours after the end of the range.
    assert leak["slope_percent_per_hour"] == pytest.approx(40 / 720, rel=0.01)
    assert leak["hours_to_exhaustion"] == pytest.approx(360, abs=6)
    assert leak["used_latest_percent"] == pytest.approx(80, abs=0.1)


def _assert_text(text: str, document: dict[str, Any]) -> None:
    for line in (
        "Average response time: 103.5 ms",
        "Peak response time:    185.0 ms",
        "Total requests:        38,556",
        "Error rate:            0.93%",
        "Uptime:                99.17%",
        "GET /api/inventory: 25,704 requests",
        "POST /api/leads: 12,852 requests",
        "cpu.percent: avg 35.0%, peak 40.0%",
    ):
        assert line in text
    for item in document["recommendations"]:
        assert f"{item['priority']}. {item['title']}" in text


def _assert_html(html: str, document: dict[str, Any], folder: Path) -> None:
    images = png_images(html)
    assert len(images) == 4 and all(image.startswith(PNG_MAGIC) for image in images)
    assert "103.5 ms" in html and "38,556" in html
    assert all(item["title"] in html for item in document["recommendations"])
    problems, control = html_problems(html, folder)
    assert problems == []
    assert any("title" in str(m.get("message")) for m in control)


def _outgoing(generator: ReportGenerator, made: ReportRecord) -> OutgoingReport:
    """What the report jobs would send: the stored renderings."""
    report_id, bodies = made.report_id, {}
    for fmt in ReportFormat:
        record = generator.archive.get(report_id, fmt)
        assert record is not None, f"report {report_id} has no stored {fmt.value}"
        bodies[fmt] = record.body.decode("utf-8")
    return OutgoingReport(
        report_id=report_id,
        dealer_id=ACME,
        title=made.title,
        html=bodies[ReportFormat.HTML],
        text=bodies[ReportFormat.TEXT],
        summary=tuple(summary_lines(json.loads(bodies[ReportFormat.JSON]))),
        url=None,
    )


def _assert_email(smtp_server: Mailbox, report: OutgoingReport) -> None:
    (email,) = smtp_server.messages
    assert smtp_server.envelopes == [("pulse@example.test", ["owner@acme.example.test"])]
    assert email["Subject"] == report.title
    text = email.get_body(preferencelist=("plain",))
    html = email.get_body(preferencelist=("html",))
    assert isinstance(text, EmailMessage) and isinstance(html, EmailMessage)
    assert "Total requests:        38,556" in text.get_content()
    assert "Response time regression on GET /api/inventory" in text.get_content()
    markup = html.get_content()
    images = [part for part in email.walk() if part.get_content_type() == "image/png"]
    assert len(images) == 4
    for image in images:
        assert f'src="cid:{str(image["Content-ID"]).strip("<>")}"' in markup
        payload = image.get_payload(decode=True)
        assert isinstance(payload, bytes) and payload.startswith(PNG_MAGIC)


def test_a_month_report_carries_what_was_inserted(
    store: SQLAlchemyMetricStore, smtp_server: Mailbox, tmp_path: Path
) -> None:
    inserted = month.fill(store)
    _roll_up(store)
    generator = ReportGenerator(
        store.engine, store_analytics(store.engine), FakeClock(GENERATED_AT)
    )

    record = generator.generate(ACME, RANGE, "adhoc")

    stored = generator.archive.get(record.report_id, ReportFormat.JSON)
    assert stored is not None
    document = json.loads(stored.body)
    assert document["report"]["dealerId"] == ACME
    assert (document["report"]["start"], document["report"]["end"]) == (
        "2026-03-01T00:00:00Z",
        "2026-03-31T00:00:00Z",
    )
    _assert_summary(document, inserted)
    _assert_endpoints(document, inserted)
    _assert_resources(document, inserted)
    _assert_recommendations(document)
    assert ZENITH not in stored.body.decode() and OTHER not in stored.body.decode()
    outgoing = _outgoing(generator, record)
    _assert_text(outgoing.text, document)
    _assert_html(outgoing.html, document, tmp_path)
    assert OTHER not in outgoing.html and OTHER not in outgoing.text

    SmtpReportSender(
        host="127.0.0.1",
        port=smtp_server.port,
        sender="pulse@example.test",
        recipients=["owner@acme.example.test"],
        security="none",
    ).send(outgoing)
    _assert_email(smtp_server, outgoing)
