"""The report's four charts as PNG images (matplotlib, Agg, no pyplot: thread-safe).

Each chart is drawn on its own :class:`Figure`, never on pyplot's global
state, so reports can be made in worker threads side by side. A chart
without data still renders, saying so, so the report keeps its layout.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import matplotlib

matplotlib.use("Agg")  # no display on servers; set before anything draws

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter, date2num
from matplotlib.figure import Figure

from reporter.model import AnalyticsData, EndpointAnalytics, Series
from reporter.reports.content import ReportOptions

WIDTH_IN, HEIGHT_IN, DPI = 8.0, 3.2, 100
RESPONSE_TIME, ENDPOINTS, RESOURCES, ERROR_RATE = (
    "response_time",
    "endpoints",
    "resources",
    "error_rate",
)
CHART_KEYS = (RESPONSE_TIME, ENDPOINTS, RESOURCES, ERROR_RATE)


@dataclass(frozen=True, slots=True)
class Chart:
    key: str  # one of CHART_KEYS: stable, used for content ids
    title: str
    alt: str  # what the chart shows, for readers without images
    png: bytes
    width_px: int
    height_px: int


def draw_charts(data: AnalyticsData, options: ReportOptions) -> tuple[Chart, ...]:
    tz = ZoneInfo(options.timezone)
    return (
        _response_time(data, options, tz),
        _endpoints(data, options),
        _resources(data, tz),
        _error_rate(data, options, tz),
    )


def _response_time(data: AnalyticsData, options: ReportOptions, tz: ZoneInfo) -> Chart:
    figure, axes = _figure()
    drawn = _line(axes, data.response_time, "average", tz)
    drawn |= _line(axes, data.response_time_p95, "p95", tz)
    threshold = options.response_time_threshold_ms
    axes.axhline(
        threshold,
        color="#c0392b",
        linestyle="--",
        linewidth=1.2,
        label=f"{threshold:g} ms threshold",
    )
    axes.set_ylabel("ms")
    axes.set_ylim(bottom=0)
    _finish(axes, drawn, tz)
    return _chart(
        figure,
        RESPONSE_TIME,
        "Response time",
        f"Average and p95 response time per {_step(data)}, with the {threshold:g} ms threshold",
    )


def _endpoints(data: AnalyticsData, options: ReportOptions) -> Chart:
    figure, axes = _figure()
    busiest = busiest_endpoints(data.endpoints, min(options.max_endpoints, 12))
    measured = [e for e in busiest if e.avg_ms is not None]
    if measured:
        names = [f"{e.method} {e.route}" for e in measured][::-1]
        rows = range(len(measured))
        avg = [e.avg_ms or 0.0 for e in measured][::-1]
        p95 = [e.p95_ms if e.p95_ms is not None else (e.avg_ms or 0.0) for e in measured][::-1]
        axes.barh([r + 0.2 for r in rows], p95, height=0.4, color="#aed6f1", label="p95")
        axes.barh([r - 0.2 for r in rows], avg, height=0.4, color="#2874a6", label="average")
        axes.set_yticks(list(rows), names, fontsize=7)
        axes.axvline(
            options.response_time_threshold_ms, color="#c0392b", linestyle="--", linewidth=1
        )
        axes.set_xlabel("ms")
        axes.legend(loc="lower right", fontsize=7)
    else:
        _no_data(axes)
    figure.tight_layout()
    return _chart(
        figure,
        ENDPOINTS,
        "API performance per endpoint",
        f"Average and p95 response time of the {len(measured)} busiest endpoints",
    )


def _resources(data: AnalyticsData, tz: ZoneInfo) -> Chart:
    figure, axes = _figure()
    drawn = False
    for usage in data.resources:
        label = usage.name.removesuffix(".percent")
        if usage.labels:
            label += " " + ",".join(f"{v}" for _, v in sorted(usage.labels.items()))
        drawn |= _line(axes, usage.series, label, tz)
    axes.set_ylabel("%")
    axes.set_ylim(0, 100)
    _finish(axes, drawn, tz)
    names = ", ".join(sorted({u.name.removesuffix(".percent") for u in data.resources})) or "none"
    return _chart(figure, RESOURCES, "Resource usage", f"Host resource usage in percent: {names}")


def _error_rate(data: AnalyticsData, options: ReportOptions, tz: ZoneInfo) -> Chart:
    figure, axes = _figure()
    drawn = _line(axes, data.error_rate, "error rate", tz, colour="#c0392b")
    threshold = options.error_rate_threshold_percent
    axes.axhline(
        threshold,
        color="#7f8c8d",
        linestyle="--",
        linewidth=1.2,
        label=f"{threshold:g} % threshold",
    )
    axes.set_ylabel("%")
    axes.set_ylim(bottom=0)
    _finish(axes, drawn, tz)
    return _chart(
        figure,
        ERROR_RATE,
        "Error rate",
        f"Server error rate per {_step(data)}, with the {threshold:g} % threshold",
    )


def busiest_endpoints(
    endpoints: Sequence[EndpointAnalytics], limit: int
) -> list[EndpointAnalytics]:
    """Most requests first; ties by route so that reports are stable."""
    return sorted(endpoints, key=lambda e: (-e.requests, e.route, e.method))[:limit]


def _figure() -> tuple[Figure, Axes]:
    figure = Figure(figsize=(WIDTH_IN, HEIGHT_IN), dpi=DPI)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.grid(True, color="#e5e8e8", linewidth=0.6)
    return figure, axes


def _line(axes: Axes, series: Series, label: str, tz: ZoneInfo, colour: str | None = None) -> bool:
    times = date2num([p.time.astimezone(tz) for p in series.points])  # type: ignore[no-untyped-call]
    # None stays a gap in the line (NaN), never a drop to zero.
    values = [float("nan") if p.value is None else p.value for p in series.points]
    if not any(p.value is not None for p in series.points):
        return False
    axes.plot(times, values, label=label, linewidth=1.3, color=colour)
    return True


def _finish(axes: Axes, drawn: bool, tz: ZoneInfo) -> None:
    if not drawn:
        _no_data(axes)
        return
    locator = AutoDateLocator(tz=tz)  # type: ignore[no-untyped-call]
    axes.xaxis.set_major_locator(locator)
    formatter = ConciseDateFormatter(locator, tz=tz)  # type: ignore[no-untyped-call]
    axes.xaxis.set_major_formatter(formatter)
    axes.legend(loc="upper left", fontsize=7)
    figure = axes.get_figure()
    if isinstance(figure, Figure):
        figure.tight_layout()


def _no_data(axes: Axes) -> None:
    axes.text(
        0.5, 0.5, "no data in this period", ha="center", va="center", transform=axes.transAxes
    )
    axes.set_xticks([])
    axes.set_yticks([])


def _step(data: AnalyticsData) -> str:
    minutes = int(data.step.total_seconds() // 60)
    if minutes % 1440 == 0:
        return f"{minutes // 1440} d" if minutes > 1440 else "day"
    if minutes % 60 == 0:
        return f"{minutes // 60} h" if minutes > 60 else "hour"
    return f"{minutes} min" if minutes > 1 else "minute"


def _chart(figure: Figure, key: str, title: str, alt: str) -> Chart:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    return Chart(
        key=key,
        title=title,
        alt=alt,
        png=buffer.getvalue(),
        width_px=round(WIDTH_IN * DPI),
        height_px=round(HEIGHT_IN * DPI),
    )
