"""The JSON API against a real uvicorn server over a filled store and the real ReporterCore."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from sqlalchemy import select

from collector.store import SQLAlchemyMetricStore
from collector.store.schema import system_alerts
from dealerpulse.clock import FakeClock
from dealerpulse.tokens import new_token
from reporter.core import ReporterCore
from reporter.http.app import create_app
from reporter.http.settings import HttpSettings
from reporter.model import Realtime, ReportFormat, TimeRange

from .conftest import AppFactory
from .harness import (
    ACME,
    CPU,
    INVENTORY_MS,
    LEADS_MS,
    MEMORY,
    NOW,
    ZENITH,
    Client,
    Tokens,
    served,
)

MONITORING = "/api/ai/performance-monitoring"


def test_performance_monitoring_reports_the_stored_figures(api: Client) -> None:
    data = api.get(f"{MONITORING}?dealerId={ACME}").data

    durations = INVENTORY_MS + LEADS_MS
    health = data["systemHealth"]
    assert data["dealerId"] == ACME
    assert data["timestamp"] == "2026-03-01T12:00:00Z"
    assert health["responseTime"] == pytest.approx(sum(durations) / len(durations))
    assert health["p95ResponseTime"] == pytest.approx(300.0, rel=0.01)
    assert health["errorRate"] == pytest.approx(100 * 2 / 150)
    # 150 requests in the 5-minute real-time window
    assert health["throughput"] == pytest.approx(30.0)
    # 1.33 % errors is over 10 x the 0.1 % threshold
    assert health["status"] == "critical"
    assert any("error rate" in reason for reason in health["reasons"])
    endpoints = {e["endpoint"]: e for e in data["apiPerformance"]}
    inventory = endpoints["/api/inventory"]
    assert inventory["method"] == "GET"
    assert inventory["errorCount"] == 2
    assert inventory["successRate"] == pytest.approx(98.0)
    assert inventory["callsPerHour"] == pytest.approx(1200.0)
    assert inventory["avgResponseTime"] == pytest.approx(sum(INVENTORY_MS) / 100)
    assert inventory["lastError"] == "upstream timeout"
    assert endpoints["/api/leads"]["lastError"] is None
    usage = data["resourceUsage"]
    assert (usage["cpu"], usage["memory"]) == (CPU, MEMORY)
    # Not measured: null, never 0
    assert usage["disk"] is None and usage["network"] is None
    assert usage["status"] == "healthy"


def test_monitoring_and_ack_on_every_backend(
    filled_any: tuple[SQLAlchemyMetricStore, Tokens], clock: FakeClock
) -> None:
    store, tokens = filled_any
    alert_id = _firing_alert(store, ACME)
    app = create_app(ReporterCore(store, clock), store, HttpSettings(), clock)
    with served(app) as port:
        acme = Client(port, tokens.acme)
        health = acme.get(MONITORING).data["systemHealth"]
        acked = acme.post(f"/api/ai/alerts/{alert_id}/acknowledge").data
    assert health["throughput"] == pytest.approx(30.0)
    assert health["errorRate"] == pytest.approx(100 * 2 / 150)
    assert acked["acknowledgedBy"] == ACME


def test_a_dealer_token_sees_its_own_dealer_by_default(api: Client, tokens: Tokens) -> None:
    data = api.as_(tokens.acme).get(MONITORING).data
    assert data["dealerId"] == ACME


def test_unknown_dealer_and_missing_dealer(api: Client) -> None:
    unknown = api.get(f"{MONITORING}?dealerId=nobody")
    assert unknown.status == 404
    # Told by the real-time read itself (no separate look-up), in the same words.
    assert unknown.error_code == "not_found"
    assert unknown.json["error"]["message"] == "dealerId: no dealer 'nobody'"
    missing = api.get(MONITORING)
    assert missing.status == 400
    assert "dealerId" in missing.json["error"]["message"]


AUTH_CASES = [
    (None, f"{MONITORING}?dealerId={ACME}", 401),
    ("bad", f"{MONITORING}?dealerId={ACME}", 401),
    ("forged", f"{MONITORING}?dealerId={ACME}", 401),
    ("acme", f"{MONITORING}?dealerId={ACME}", 200),
    ("acme", f"{MONITORING}?dealerId={ZENITH}", 403),
    ("zenith", f"{MONITORING}?dealerId={ACME}", 403),
    ("admin", f"{MONITORING}?dealerId={ZENITH}", 200),
    ("acme", f"/api/ai/performance-alerts?dealerId={ZENITH}", 403),
    ("acme", f"/api/ai/alerts?dealerId={ZENITH}", 403),
    ("acme", f"/api/ai/reports?dealerId={ZENITH}", 403),
    (None, "/api/dealers", 401),
]


def test_auth_matrix(api: Client, tokens: Tokens) -> None:
    token_of = {
        None: None,
        "bad": "not-a-token",
        "forged": new_token(ACME),  # well-formed, never issued
        "acme": tokens.acme,
        "zenith": tokens.zenith,
        "admin": tokens.admin,
    }
    for who, path, status in AUTH_CASES:
        token = token_of[who]
        answer = api.as_(token).get(path)
        assert answer.status == status, (who, path, answer.body)
        if status == 401:
            assert answer.error_code == "unauthenticated"
            assert answer.headers["www-authenticate"] == "Bearer"
        if status == 403:
            assert answer.error_code == "permission_denied"
        if token is not None:
            assert token.encode() not in answer.body


def test_analytics_of_the_stored_traffic(api: Client, tokens: Tokens) -> None:
    data = api.as_(tokens.acme).get("/api/ai/performance-analytics?timeRange=1h").data
    assert data["dealerId"] == ACME
    assert data["timeRange"] == {
        "start": "2026-03-01T11:00:00Z",
        "end": "2026-03-01T12:00:00Z",
        "step": 60,
    }
    summary = data["summary"]
    assert summary["totalRequests"] == 150
    assert summary["errorCount"] == 2
    assert summary["avgResponseTime"] == pytest.approx(sum(INVENTORY_MS + LEADS_MS) / 150, rel=0.01)
    endpoints = {(e["endpoint"], e["method"]): e for e in data["endpoints"]}
    assert endpoints[("/api/inventory", "GET")]["requests"] == 100
    assert endpoints[("/api/leads", "POST")]["errorCount"] == 0
    points = data["series"]["responseTime"]
    assert len(points) == 60
    measured = [value for _, value in points if value is not None]
    assert measured, "the minute of traffic shows in the series"
    assert set(data["trends"]) == {"responseTime", "errorRate", "throughput"}
    # Admin for every dealer: the same traffic (only ACME has any).
    everyone = api.get("/api/ai/performance-analytics?timeRange=1h").data
    assert everyone["dealerId"] is None
    assert everyone["summary"]["totalRequests"] == 150


def test_dealers_admin_sees_all_a_dealer_itself(api: Client, tokens: Tokens) -> None:
    everyone = api.get("/api/dealers").data
    assert everyone == [
        {"dealerId": ACME, "name": "Acme Motors"},
        {"dealerId": ZENITH, "name": "Zenith Auto"},
    ]
    assert api.as_(tokens.zenith).get("/api/dealers").data == [
        {"dealerId": ZENITH, "name": "Zenith Auto"}
    ]


def test_posting_an_alert_rule_then_listing_it(api: Client, tokens: Tokens) -> None:
    acme = api.as_(tokens.acme)
    created = acme.post(
        "/api/ai/performance-alerts",
        {"alertType": "responseTime", "threshold": 250, "dealerId": ACME, "channels": []},
    )
    assert created.status == 201, created.body
    rule = created.data
    assert rule["alertType"] == "response_time"
    assert rule["metric"] == "api.response_time_ms"
    assert rule["warningThreshold"] == 250.0
    assert rule["dealerId"] == ACME
    assert rule["enabled"] is True

    listed = acme.get("/api/ai/performance-alerts").data
    assert [r["id"] for r in listed] == [rule["id"]]
    # Another dealer neither sees it nor may create rules for ACME.
    assert api.as_(tokens.zenith).get("/api/ai/performance-alerts").data == []
    refused = api.as_(tokens.zenith).post(
        "/api/ai/performance-alerts", {"alertType": "cpu", "threshold": 90, "dealerId": ACME}
    )
    assert refused.status == 403
    again = acme.post(
        "/api/ai/performance-alerts",
        {"alertType": "responseTime", "threshold": 250, "dealerId": ACME},
    )
    assert again.status == 409


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"alertType": "weather", "threshold": 1, "dealerId": ACME}, "alertType"),
        ({"alertType": "cpu", "threshold": -1, "dealerId": ACME}, "threshold"),
        ({"alertType": "cpu", "dealerId": ACME}, "threshold"),
        (
            {"metric": "cpu.percent", "name": "x", "comparator": "~", "warningThreshold": 1},
            "comparator",
        ),
        ({"metric": "cpu.percent", "name": "x"}, "threshold"),
        ([1, 2], "body"),
        (b"{not json", "body"),
    ],
)
def test_bad_rules_are_refused_naming_the_field(api: Client, body: object, named: str) -> None:
    answer = api.post("/api/ai/performance-alerts", body)
    assert answer.status == 400, answer.body
    assert answer.error_code == "invalid_argument"
    assert named in answer.json["error"]["message"]


def _firing_alert(store: SQLAlchemyMetricStore, dealer_id: str) -> int:
    with store.engine.begin() as connection:
        inserted = connection.execute(
            system_alerts.insert().returning(system_alerts.c.id),
            {
                "dealer_id": dealer_id,
                "type": "cpu",
                "severity": "warning",
                "message": "cpu 93% > 80%",
                "created_at": NOW,
                "started_at": NOW,
                "state": "firing",
                "value": 93.0,
                "threshold": 80.0,
            },
        )
        return int(inserted.scalar_one())


def test_listing_and_acknowledging_an_alert(
    api: Client, tokens: Tokens, store: SQLAlchemyMetricStore
) -> None:
    alert_id = _firing_alert(store, ACME)
    acme = api.as_(tokens.acme)

    firing = acme.get("/api/ai/alerts?state=firing").data
    assert [(a["id"], a["type"], a["value"], a["threshold"]) for a in firing] == [
        (alert_id, "cpu", 93.0, 80.0)
    ]
    assert firing[0]["startedAt"] == "2026-03-01T12:00:00Z"
    assert firing[0]["acknowledgedBy"] is None
    assert api.as_(tokens.zenith).get("/api/ai/alerts?state=all").data == []
    # Another dealer cannot acknowledge it, nor learn that it exists.
    hidden = api.as_(tokens.zenith).post(f"/api/ai/alerts/{alert_id}/acknowledge")
    assert hidden.status == 404

    acked = acme.post(f"/api/ai/alerts/{alert_id}/acknowledge", {"by": "Dana"}).data
    assert acked["acknowledgedBy"] == "Dana"
    assert acked["acknowledgedAt"] == "2026-03-01T12:00:00Z"
    with store.engine.connect() as connection:
        row = connection.execute(
            select(system_alerts.c.acknowledged_by).where(system_alerts.c.id == alert_id)
        ).one()
    assert row.acknowledged_by == "Dana"
    assert api.post("/api/ai/alerts/999999/acknowledge").status == 404
    assert api.post("/api/ai/alerts/abc/acknowledge").status == 400


def test_alert_state_must_be_known(api: Client) -> None:
    answer = api.get("/api/ai/alerts?state=sleeping")
    assert answer.status == 400
    assert "state" in answer.json["error"]["message"]


def test_analytics_range_errors_name_the_parameter(api: Client) -> None:
    bad = api.get(f"/api/ai/performance-analytics?dealerId={ACME}&timeRange=fortnight")
    assert bad.status == 400
    assert "timeRange" in bad.json["error"]["message"]
    naive = api.get(
        f"/api/ai/performance-analytics?dealerId={ACME}&start=2026-03-01T00:00:00&end=2026-03-01T01:00:00Z"
    )
    assert naive.status == 400
    assert "start" in naive.json["error"]["message"]


class ExplodingCore(ReporterCore):
    def realtime(self, dealer_id: str) -> Realtime:
        raise RuntimeError("secret internal detail /etc/passwd")


def test_an_unexpected_error_is_a_500_envelope_without_details(
    store: SQLAlchemyMetricStore, tokens: Tokens, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(ExplodingCore(store), store, HttpSettings(), clock)
    with served(app) as port, caplog.at_level(logging.ERROR):
        answer = Client(port, tokens.admin).get(f"{MONITORING}?dealerId={ACME}")
    assert answer.status == 500
    assert answer.json == {
        "success": False,
        "error": {"code": "internal", "message": "internal error; the server logged the details"},
    }
    assert b"secret" not in answer.body and b"Traceback" not in answer.body
    assert "secret internal detail" in caplog.text


def test_unknown_api_path_is_a_json_404(api: Client) -> None:
    answer = api.get("/api/nothing-here")
    assert answer.status == 404
    assert answer.error_code == "not_found"


def test_dashboard_page_is_public(make_app: AppFactory) -> None:
    with served(make_app()) as port:
        page = Client(port).get("/")
    assert page.status == 200
    assert page.headers["content-type"].startswith("text/html")


def test_reports_are_listed_and_downloaded_per_dealer(
    api: Client, tokens: Tokens, store: SQLAlchemyMetricStore, clock: FakeClock
) -> None:
    core = ReporterCore(store, clock)
    record = core.generate_report(ACME, TimeRange(NOW - timedelta(hours=1), NOW), ReportFormat.HTML)
    acme = api.as_(tokens.acme)

    listed = acme.get("/api/ai/reports").data
    assert [(r["id"], r["dealerId"]) for r in listed] == [(record.report_id, ACME)]
    assert listed[0]["start"] == "2026-03-01T11:00:00Z"
    html = acme.get(f"/api/ai/reports/{record.report_id}?format=html")
    assert html.status == 200
    assert html.headers["content-type"].startswith("text/html")
    text = acme.get(f"/api/ai/reports/{record.report_id}?format=text")
    assert text.headers["content-type"].startswith("text/plain")
    assert text.body.strip()
    assert api.as_(tokens.zenith).get("/api/ai/reports").data == []
    assert api.as_(tokens.zenith).get(f"/api/ai/reports/{record.report_id}").status == 404
    assert acme.get(f"/api/ai/reports/{record.report_id}?format=pdf").status == 400
