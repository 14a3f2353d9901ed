"""Stored reports on SQLite and PostgreSQL: generate, list, get; alerts of the period."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import insert, select

from collector.store import SQLAlchemyMetricStore
from collector.store.schema import reports, system_alerts
from dealerpulse.clock import FakeClock
from reporter.model import Analytics, ReportFormat, TimeRange
from reporter.reports import ReportArchive, ReportError, ReportGenerator
from reporter.reports.alerts import read_digest

from . import factories
from .helpers import CountingAnalytics, add_dealers


def test_a_generated_report_is_stored_in_three_formats(store: SQLAlchemyMetricStore) -> None:
    add_dealers(store, "acme-motors", "zenith-cars")
    clock = FakeClock(factories.RANGE.end + timedelta(hours=1))
    source = CountingAnalytics()
    generator = ReportGenerator(store.engine, source, clock)
    record = generator.generate("acme-motors", factories.RANGE)
    assert source.asked == [("acme-motors", factories.RANGE)]
    assert record.body.startswith(b"<!DOCTYPE html>") and record.format is ReportFormat.HTML

    archive = ReportArchive(store.engine)
    (listed,) = archive.list("acme-motors", 10)
    assert (listed.report_id, listed.body, listed.range) == (record.report_id, b"", factories.RANGE)
    assert listed.period == "adhoc" and "acme-motors" in listed.title
    assert archive.list("zenith-cars", 10) == [] and len(archive.list(None, 10)) == 1

    stored_json = archive.get(record.report_id, ReportFormat.JSON)
    assert stored_json is not None and stored_json.format is ReportFormat.JSON
    document = json.loads(stored_json.body)
    assert (
        document["summary"]["totalRequests"] == 48_000 and document["report"]["period"] == "adhoc"
    )
    text = archive.get(record.report_id, ReportFormat.TEXT)
    assert text is not None and b"Total requests:        48,000" in text.body
    html = archive.get(record.report_id)
    assert html is not None and html.body == record.body
    assert archive.get(record.report_id + 100, ReportFormat.HTML) is None


def test_a_report_over_every_dealer(store: SQLAlchemyMetricStore) -> None:
    clock = FakeClock(factories.RANGE.end)
    record = ReportGenerator(store.engine, CountingAnalytics(), clock).generate(
        None, factories.RANGE
    )
    assert record.dealer_id is None and "all dealers" in record.title
    assert [r.report_id for r in ReportArchive(store.engine).list(None, 5)] == [record.report_id]


def test_a_failing_report_is_recorded_and_not_served(store: SQLAlchemyMetricStore) -> None:
    add_dealers(store, "acme-motors")

    def broken(dealer_id: str | None, time_range: TimeRange) -> Analytics:
        raise RuntimeError("rollups unreadable")

    generator = ReportGenerator(store.engine, broken, FakeClock(factories.RANGE.end))
    with pytest.raises(ReportError, match="rollups unreadable"):
        generator.generate("acme-motors", factories.RANGE)
    with store.engine.connect() as connection:
        row = connection.execute(select(reports.c.status, reports.c.last_error)).one()
    assert row.status == "failed" and "RuntimeError: rollups unreadable" in row.last_error
    assert ReportArchive(store.engine).list(None, 5) == []


def test_bad_arguments_are_named(store: SQLAlchemyMetricStore) -> None:
    with pytest.raises(ValueError, match="limit"):
        ReportArchive(store.engine).list(None, 0)
    with pytest.raises(ValueError, match="'pdf'"):
        ReportArchive(store.engine).get(1, "pdf")  # type: ignore[arg-type]


def test_alerts_of_the_period_come_from_system_alerts(store: SQLAlchemyMetricStore) -> None:
    add_dealers(store, "acme-motors", "zenith-cars")
    start = factories.RANGE.start
    minute = timedelta(minutes=1)
    rows = [
        # (dealer, type, severity, started, acknowledged after, resolved after) in minutes
        ("acme-motors", "response_time", "warning", start + 60 * minute, 4, 30),
        ("acme-motors", "response_time", "critical", start + 90 * minute, None, 10),
        ("acme-motors", "cpu", "warning", start + 120 * minute, 8, None),
        ("acme-motors", "cpu", "warning", start - minute, 1, 1),  # before the period
        ("zenith-cars", "cpu", "critical", start + minute, None, None),  # another dealer
    ]
    with store.engine.begin() as connection:
        for dealer, kind, severity, started, ack, resolved in rows:
            connection.execute(
                insert(system_alerts).values(
                    dealer_id=dealer,
                    type=kind,
                    severity=severity,
                    message=f"{kind} alert",
                    resolved=resolved is not None,
                    resolved_at=None if resolved is None else started + resolved * minute,
                    created_at=started,
                    started_at=started,
                    acknowledged_at=None if ack is None else started + ack * minute,
                    state="firing" if resolved is None else "resolved",
                )
            )
    digest = read_digest(store.engine, "acme-motors", factories.RANGE)
    assert digest.total == 3 and digest.unresolved == 1
    assert digest.by_severity == (("warning", 2), ("critical", 1))
    assert (digest.to_acknowledge.count, digest.to_acknowledge.median_s) == (2, 360.0)
    assert (digest.to_resolve.median_s, digest.to_resolve.mean_s) == (1200.0, 1200.0)
    assert [(r.rule, r.episodes) for r in digest.noisiest] == [("cpu", 1), ("response_time", 2)][
        ::-1
    ]
    assert read_digest(store.engine, None, factories.RANGE).total == 4
