"""Periodic and ad hoc reports: render (HTML, JSON, text), store, schedule, deliver.

For the reporter service: :class:`ReportArchive` (``list``, ``get``) and
:class:`ReportGenerator` (``generate``). For the collector: :class:`ReportJobs`.

The names are imported on first use: the collector's settings import
:mod:`reporter.reports.options`, which must not pull in matplotlib.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from reporter.reports.archive import ReportArchive
    from reporter.reports.content import ReportOptions
    from reporter.reports.generator import (
        AnalyticsSource,
        ReportError,
        ReportGenerator,
        store_analytics,
    )
    from reporter.reports.jobs import (
        ReportJobs,
        ReportJobSettings,
        ReportJobStats,
        RunReport,
        report_jobs_from_settings,
    )
    from reporter.reports.schedule import Period, Schedule, ScheduleError, due_periods

_WHERE = {
    "ReportArchive": "archive",
    "ReportOptions": "content",
    "AnalyticsSource": "generator",
    "ReportError": "generator",
    "ReportGenerator": "generator",
    "store_analytics": "generator",
    "ReportJobs": "jobs",
    "ReportJobSettings": "jobs",
    "ReportJobStats": "jobs",
    "RunReport": "jobs",
    "report_jobs_from_settings": "jobs",
    "Period": "schedule",
    "Schedule": "schedule",
    "ScheduleError": "schedule",
    "due_periods": "schedule",
}

__all__ = [
    "AnalyticsSource",
    "Period",
    "ReportArchive",
    "ReportError",
    "ReportGenerator",
    "ReportJobSettings",
    "ReportJobStats",
    "ReportJobs",
    "ReportOptions",
    "RunReport",
    "Schedule",
    "ScheduleError",
    "due_periods",
    "report_jobs_from_settings",
    "store_analytics",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'reporter.reports' has no attribute {name!r}")
    return getattr(importlib.import_module(f"reporter.reports.{module}"), name)
