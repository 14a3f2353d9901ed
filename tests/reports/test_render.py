"""The three renderings of a report built from hand-made analytics with known figures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reporter.reports.charts import CHART_KEYS, Chart, draw_charts
from reporter.reports.content import ReportOptions
from reporter.reports.render import render_html, render_json, render_text

from . import factories
from .helpers import PNG_MAGIC, html_problems, png_images


def test_json_figures_equal_the_inputs() -> None:
    content = factories.content()
    data = content.analytics.data
    document = json.loads(render_json(content))
    assert document["report"]["id"] == 7 and document["report"]["dealerId"] == "acme-motors"
    assert document["report"]["start"] == "2026-03-02T00:00:00Z"
    assert document["summary"] == {
        "avgResponseTime": 181.25,
        "peakResponseTime": 1250.0,
        "p50ResponseTime": 150.0,
        "p95ResponseTime": 420.0,
        "p99ResponseTime": 900.0,
        "totalRequests": 48_000,
        "errorCount": 24,
        "errorRate": 0.05,
        "throughput": 33.3,
        "uptime": 99.95,
    }
    leads, inventory, idle = document["endpoints"]
    assert (leads["endpoint"], leads["requests"], leads["errorCount"]) == ("/api/leads", 30_000, 20)
    assert inventory["p95ResponseTime"] == 480.0 and inventory["avgResponseTime"] == 240.0
    assert idle["avgResponseTime"] is None and idle["errorRate"] is None  # no data is null, not 0
    # Every point of the dealer-wide series, gaps as null.
    response = document["series"]["responseTime"]
    assert [v for _, v in response] == [p.value for p in data.response_time.points]
    assert response[7] == ["2026-03-02T07:00:00Z", None]
    disk = document["resources"][1]
    assert (disk["name"], disk["labels"], disk["avg"], disk["peak"]) == (
        "disk.percent",
        {"mount": "/"},
        70.25,
        71.0,
    )
    assert document["trends"]["responseTime"]["direction"] == "degrading"
    assert document["trends"]["responseTime"]["pValue"] == 0.001
    assert document["recommendations"][0]["evidence"] == {"p95_ms": 480.0, "requests": 18_000.0}


def test_json_alerts_of_the_period() -> None:
    alerts = json.loads(render_json(factories.content()))["alerts"]
    assert alerts["total"] == 3 and alerts["unresolved"] == 1
    assert alerts["bySeverity"] == {"warning": 2, "critical": 1}
    # Acknowledged after 4 and 2 minutes; resolved after 30 and 10 minutes.
    assert alerts["timeToAcknowledge"] == {"count": 2, "medianSeconds": 180.0, "meanSeconds": 180.0}
    assert alerts["timeToResolve"] == {"count": 2, "medianSeconds": 1200.0, "meanSeconds": 1200.0}
    assert alerts["noisiestRules"] == [
        {"rule": "builtin:response_time", "episodes": 2},
        {"rule": "builtin:cpu", "episodes": 1},
    ]


def test_text_summary_names_the_figures() -> None:
    text = render_text(factories.content())
    assert "Daily performance report: acme-motors, 2026-03-02" in text
    # Local times of the report's time zone (New York, EST).
    assert "2026-03-01 19:00 EST to 2026-03-02 19:00 EST" in text
    for figure in ("181.2 ms", "1,250.0 ms", "48,000", "0.05%", "99.95%"):
        assert figure in text
    assert "GET /api/leads: 30,000 requests" in text
    assert "time to acknowledge: median 3 min 0 s" in text
    assert "1. Cache GET /api/inventory" in text


@pytest.fixture(scope="module")
def charts() -> tuple[Chart, ...]:
    """The fixture report's charts, drawn once: drawing is most of these tests' time."""
    content = factories.content()
    return draw_charts(content.analytics.data, content.options)


def test_html_embeds_the_four_charts_and_escapes_text(charts: tuple[Chart, ...]) -> None:
    content = factories.content()
    assert [chart.key for chart in charts] == list(CHART_KEYS)
    html = render_html(content, charts)
    images = png_images(html)
    assert len(images) == 4 and all(image.startswith(PNG_MAGIC) for image in images)
    assert {image for image in images} == {chart.png for chart in charts}
    assert "200 ms threshold" in html  # the response-time chart's description
    assert "<script>" not in html and "&lt;script&gt;" in html  # data is text, never markup
    assert "181.2 ms" in html and "99.95%" in html


def test_charts_render_without_data() -> None:
    content = factories.content()
    empty = content.analytics.data.__class__(
        **{
            **{
                f: getattr(content.analytics.data, f)
                for f in ("dealer_id", "range", "step", "summary")
            },
            "endpoints": (),
            "response_time": factories.series("r", "ms", []),
            "response_time_p95": factories.series("r", "ms", []),
            "error_rate": factories.series("e", "%", [None, None]),
            "throughput": factories.series("t", "1/min", []),
            "resources": (),
        }
    )
    charts = draw_charts(empty, ReportOptions())
    assert len(charts) == 4 and all(chart.png.startswith(PNG_MAGIC) for chart in charts)


def test_html_is_valid_html5(charts: tuple[Chart, ...], tmp_path: Path) -> None:
    html = render_html(factories.content(), charts)
    problems, control = html_problems(html, tmp_path)
    assert problems == []
    assert any("title" in str(m.get("message")) for m in control)
