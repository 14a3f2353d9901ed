"""Making a report: read the analytics and the alerts, render three ways, store.

The analytics come from a callable, so that the reporter service can pass
its cached one and the collector's jobs a plain one (:func:`store_analytics`).
A report that fails is stored as ``failed`` with the error, and the error is
raised; a failed scheduled period is not retried (its claim stays taken).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import Engine

from dealerpulse.clock import Clock
from reporter.model import Analytics, ReportFormat, ReportRecord, TimeRange
from reporter.reports.alerts import read_digest
from reporter.reports.archive import Claim, Renderings, ReportArchive, claim_key
from reporter.reports.charts import draw_charts
from reporter.reports.content import ReportContent, ReportOptions, report_title
from reporter.reports.render import render_html, render_json, render_text
from reporter.reports.schedule import Period

logger = logging.getLogger(__name__)

AnalyticsSource = Callable[[str | None, TimeRange], Analytics]
ADHOC = "adhoc"


class ReportError(Exception):
    """A report could not be made or stored; the message says which and why."""


def store_analytics(engine: Engine) -> AnalyticsSource:
    """Analytics straight from the store: the query layer plus the analysis."""
    # Imported here: the query layer and the analysis are the reporter's heavier parts.
    from reporter.analysis import analyse
    from reporter.queries import read_analytics

    def analytics(dealer_id: str | None, time_range: TimeRange) -> Analytics:
        data = read_analytics(engine, dealer_id, time_range)
        trends, recommendations = analyse(data)
        return Analytics(data, trends, recommendations)

    return analytics


def render_all(content: ReportContent) -> Renderings:
    charts = draw_charts(content.analytics.data, content.options)
    return Renderings(
        html=render_html(content, charts), json=render_json(content), text=render_text(content)
    )


class ReportGenerator:
    def __init__(
        self,
        engine: Engine,
        analytics: AnalyticsSource,
        clock: Clock,
        options: ReportOptions | None = None,
        archive: ReportArchive | None = None,
    ) -> None:
        self._engine = engine
        self._analytics = analytics
        self._clock = clock
        self._options = options or ReportOptions()
        self._tz = ZoneInfo(self._options.timezone)
        self._archive = archive or ReportArchive(engine)

    @property
    def archive(self) -> ReportArchive:
        return self._archive

    def generate(
        self, dealer_id: str | None, time_range: TimeRange, period: str = ADHOC
    ) -> ReportRecord:
        """Make, store and return a report of ``time_range`` (HTML body; JSON/text stored)."""
        label = f"{self._local(time_range.start)} to {self._local(time_range.end)}"
        title = report_title(dealer_id, period, label)
        claim = self._archive.claim(
            dealer_id=dealer_id,
            period=period,
            time_range=time_range,
            key=None,
            timezone=self._options.timezone,
            title=title,
            now=self._clock.now(),
        )
        assert claim is not None  # an ad hoc report has no key to clash on
        return self._make(claim, dealer_id, period, time_range, title, deliver=False)

    def generate_period(self, dealer_id: str, period: Period, deliver: bool) -> ReportRecord | None:
        """The scheduled report of ``period``; None when another collector has it (or had)."""
        time_range = TimeRange(period.start, period.end)
        key = claim_key(period.name, dealer_id, period.start)
        title = report_title(dealer_id, period.name, period.label)
        now = self._clock.now()
        claim = self._archive.claim(
            dealer_id=dealer_id,
            period=period.name,
            time_range=time_range,
            key=key,
            timezone=self._options.timezone,
            title=title,
            now=now,
        ) or self._archive.take_over_stale(key, now)
        if claim is None:
            return None
        return self._make(claim, dealer_id, period.name, time_range, title, deliver)

    def _make(
        self,
        claim: Claim,
        dealer_id: str | None,
        period: str,
        time_range: TimeRange,
        title: str,
        deliver: bool,
    ) -> ReportRecord:
        created = self._clock.now()
        try:
            content = ReportContent(
                report_id=claim.report_id,
                title=title,
                dealer_id=dealer_id,
                period=period,
                range=time_range,
                generated_at=created,
                analytics=self._analytics(dealer_id, time_range),
                alerts=read_digest(self._engine, dealer_id, time_range),
                options=self._options,
            )
            renderings = render_all(content)
        except Exception as error:
            logger.exception("report %s (%s) failed", claim.report_id, title)
            self._archive.fail(claim, f"{type(error).__name__}: {error}", self._clock.now())
            raise ReportError(f"report {title!r} failed: {error}") from error
        if not self._archive.fill(claim, renderings, self._clock.now(), deliver):
            raise ReportError(f"report {claim.report_id} was taken over while it was being made")
        logger.info("report %s made: %s", claim.report_id, title)
        return ReportRecord(
            report_id=claim.report_id,
            dealer_id=dealer_id,
            period=period,
            range=time_range,
            format=ReportFormat.HTML,
            created_at=created,
            title=title,
            body=renderings.html.encode("utf-8"),
        )

    def _local(self, moment: datetime) -> str:
        return moment.astimezone(self._tz).strftime("%Y-%m-%d %H:%M")
