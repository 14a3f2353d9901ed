"""The dashboard page in headless Chromium against the real reporter app.

What a user sees: the page loads cleanly, shows the known health of Sunrise
Motors, draws the three charts, picks up a new alert on its own refresh
(without reloading the page), acknowledges an alert in the store, sorts the
API table, and fits a tablet's width. Screenshots go to test-artifacts/.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from gateway.harness import served
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from collector.alerting import manage
from collector.alerting.engine import AlertEngine
from collector.alerting.rules import Aggregation, Comparator, Condition, Rule, Thresholds

from . import dataset
from .harness import TABLET, WAIT_S, Dashboard, save_artifact

pytestmark = pytest.mark.browser


# ---- helpers


def wait_for(driver: Any, condition: Callable[[Any], Any], what: str) -> Any:
    return WebDriverWait(driver, WAIT_S, poll_frequency=0.1).until(
        condition, message=f"timed out after {WAIT_S} s waiting for {what}"
    )


def page_state(driver: Any) -> str:
    return str(driver.execute_script("return document.body.dataset.state || ''"))


def open_dashboard(driver: Any, url: str) -> None:
    driver.get(url)
    wait_for(driver, lambda d: page_state(d) in ("ready", "error", "login"), "the first refresh")
    error = driver.find_element(By.ID, "error-line").text
    assert page_state(driver) == "ready", f"page state {page_state(driver)!r}: {error}"


def console_errors(driver: Any) -> list[dict[str, Any]]:
    return [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def tile_text(driver: Any, field: str) -> str:
    return str(driver.find_element(By.CSS_SELECTOR, f'.tile[data-field="{field}"] dd').text)


def meter_text(driver: Any, field: str) -> str:
    selector = f'.meter-row[data-field="{field}"] .meter-value'
    return str(driver.find_element(By.CSS_SELECTOR, selector).text)


def table_endpoints(driver: Any) -> list[str]:
    rows = driver.find_elements(By.CSS_SELECTOR, "#api-table tbody tr[data-endpoint]")
    return [row.get_attribute("data-endpoint") for row in rows]


def refresh_count(driver: Any) -> int:
    return int(driver.execute_script("return Number(document.body.dataset.refreshCount || 0)"))


def fire_alert(dashboard: Dashboard, name: str, disk_threshold: float) -> int:
    """A rule on the dealer's disk (93 %) above ``disk_threshold``: one evaluation opens it."""
    engine = dashboard.store.engine
    rule = manage.create_rule(
        engine,
        Rule(
            name=name,
            condition=Condition(
                "disk.used_percent",
                Aggregation.MAX,
                300,
                Comparator.GT,
                Thresholds(warning=disk_threshold),
            ),
            dealer_id=dataset.DEALER,
            alert_type="disk",
        ),
        dataset.NOW,
    )
    AlertEngine(engine, dashboard.clock).tick()
    firing = manage.list_alerts(
        engine, manage.AlertFilter(dealer_id=dataset.DEALER, state="firing")
    )
    opened = [alert.id for alert in firing if alert.rule_id == rule.id]
    assert len(opened) == 1, f"rule {name!r} opened {len(opened)} alerts"
    return opened[0]


def alert_text(driver: Any, alert_id: int) -> str | None:
    """The alert's text on the page, or None; read in one step (a refresh redraws the list)."""
    found = driver.execute_script(
        "const item = document.querySelector(`#alerts li[data-alert-id='${arguments[0]}']`);"
        "return item ? item.textContent : null;",
        alert_id,
    )
    return None if found is None else str(found)


# ---- tests


def test_the_page_loads_clean_and_takes_the_token_from_the_url_once(
    driver: Any, dashboard: Dashboard
) -> None:
    open_dashboard(driver, dashboard.page(dashboard.tokens.admin))

    assert console_errors(driver) == []
    assert "token" not in driver.current_url
    stored = driver.execute_script("return sessionStorage.getItem('dealerpulse.token')")
    assert stored == dashboard.tokens.admin
    # An admin chooses among every dealer.
    options = Select(driver.find_element(By.ID, "dealer-select")).options
    assert [o.get_attribute("value") for o in options] == [dataset.DEALER, dataset.OTHER]
    save_artifact(driver, "dashboard-laptop.png")


def test_a_dealer_sees_its_known_health_resources_and_endpoints(
    driver: Any, dashboard: Dashboard
) -> None:
    open_dashboard(driver, dashboard.page(dashboard.tokens.dealer))

    assert not driver.find_element(By.ID, "dealer-select").is_displayed()
    assert dataset.DEALER_NAME in driver.find_element(By.ID, "dealer-name").text
    # 800 requests in the 5-minute window: 600 x 120 ms, 200 x 300 ms with 2 errors.
    assert tile_text(driver, "responseTime") == "165 ms"
    assert tile_text(driver, "errorRate") == "0.25 %"
    assert tile_text(driver, "throughput") == "160 req/min"
    assert tile_text(driver, "uptime") == "100 %"
    status = driver.find_element(By.CSS_SELECTOR, '.tile[data-field="status"] [data-status]')
    assert status.get_attribute("data-status") == "warning"
    assert status.text.strip().endswith("Warning")  # a word, not only a colour
    reasons = driver.find_element(By.ID, "health-reasons").text
    assert "error rate" in reasons

    assert meter_text(driver, "cpu") == "42.5 %"
    assert meter_text(driver, "memory") == "61 %"
    assert meter_text(driver, "disk") == "93 %"

    assert table_endpoints(driver) == ["GET /api/inventory", "POST /api/leads"]
    leads = driver.find_element(By.CSS_SELECTOR, 'tr[data-endpoint="POST /api/leads"]')
    cells = [cell.text for cell in leads.find_elements(By.CSS_SELECTOR, "td")]
    # avg, p95, success, calls/hour, errors, last error
    assert cells[0] == "300"
    assert cells[2] == "99 %"
    assert cells[3] == "2,400"
    assert cells[4] == "2"
    assert dataset.LEADS_ERROR in cells[5]
    assert console_errors(driver) == []


def test_the_three_charts_draw_the_stored_series(driver: Any, dashboard: Dashboard) -> None:
    open_dashboard(driver, dashboard.page(dashboard.tokens.dealer))

    response = driver.find_element(By.ID, "chart-response-time")
    averages = response.find_elements(By.CSS_SELECTOR, '[data-series="responseTime"] circle.point')
    # 24 h of traffic every 5 minutes (minus the quiet last minutes) at a 5-minute step.
    assert len(averages) > 200
    values = [float(point.get_attribute("data-value")) for point in averages]
    assert min(values) >= 39.0
    assert max(values) <= 300.0
    threshold = response.find_element(By.CSS_SELECTOR, "g.threshold")
    assert threshold.get_attribute("data-threshold") == "200"

    bars = driver.find_element(By.ID, "chart-endpoints")
    labels = [
        g.get_attribute("data-label") for g in bars.find_elements(By.CSS_SELECTOR, ".bar-group")
    ]
    assert labels == ["GET /api/inventory", "POST /api/leads"]
    assert len(bars.find_elements(By.CSS_SELECTOR, "rect.bar")) == 4  # avg and p95 each

    resources = driver.find_element(By.ID, "chart-resources")
    cpu = resources.find_elements(By.CSS_SELECTOR, '[data-series="cpu"] circle.point')
    assert len(cpu) > 200
    for chart in (response, bars, resources):
        assert chart.find_element(By.CSS_SELECTOR, "svg").get_attribute("role") == "img"
    assert console_errors(driver) == []


def test_a_new_alert_appears_on_refresh_without_reloading_the_page(
    driver: Any, dashboard: Dashboard
) -> None:
    open_dashboard(driver, dashboard.page(dashboard.tokens.dealer, refresh="1"))
    driver.execute_script("window.__sameDocument = 'not reloaded'")
    refreshes = refresh_count(driver)

    alert_id = fire_alert(dashboard, "disk above 90 (browser test)", 90.0)

    text = wait_for(driver, lambda d: alert_text(d, alert_id), f"alert {alert_id} on the page")
    assert "disk" in text
    assert refresh_count(driver) > refreshes
    assert driver.execute_script("return window.__sameDocument") == "not reloaded"
    assert console_errors(driver) == []


def test_acknowledging_an_alert_records_it_in_the_store(driver: Any, dashboard: Dashboard) -> None:
    alert_id = fire_alert(dashboard, "disk above 80 (browser test)", 80.0)
    open_dashboard(driver, dashboard.page(dashboard.tokens.dealer))
    wait_for(driver, lambda d: alert_text(d, alert_id), f"alert {alert_id} on the page")

    button = f'#alerts li[data-alert-id="{alert_id}"] button.ack'
    driver.find_element(By.CSS_SELECTOR, button).click()

    wait_for(
        driver,
        lambda d: "Acknowledged by" in (alert_text(d, alert_id) or ""),
        "the acknowledgement on the page",
    )
    stored = manage.get_alert(dashboard.store.engine, alert_id)
    assert stored.acknowledged_at is not None
    assert stored.acknowledged_by
    assert console_errors(driver) == []


def test_the_api_table_sorts_by_the_clicked_column(driver: Any, dashboard: Dashboard) -> None:
    open_dashboard(driver, dashboard.page(dashboard.tokens.dealer))
    header = driver.find_element(By.CSS_SELECTOR, 'th[data-key="avgResponseTime"]')

    header.find_element(By.TAG_NAME, "button").click()  # numbers: largest first
    assert header.get_attribute("aria-sort") == "descending"
    assert table_endpoints(driver) == ["POST /api/leads", "GET /api/inventory"]

    header.find_element(By.TAG_NAME, "button").click()
    assert header.get_attribute("aria-sort") == "ascending"
    assert table_endpoints(driver) == ["GET /api/inventory", "POST /api/leads"]


def test_the_range_selector_redraws_the_charts_without_a_reload(
    driver: Any, dashboard: Dashboard
) -> None:
    open_dashboard(driver, dashboard.page(dashboard.tokens.dealer))
    driver.execute_script("window.__sameDocument = 'not reloaded'")
    selector = '#chart-response-time [data-series="responseTime"] circle.point'
    day = len(driver.find_elements(By.CSS_SELECTOR, selector))
    refreshes = refresh_count(driver)

    Select(driver.find_element(By.ID, "range-select")).select_by_value("7d")

    wait_for(driver, lambda d: refresh_count(d) > refreshes, "the refresh for 7d")
    week = len(driver.find_elements(By.CSS_SELECTOR, selector))
    # 7d is drawn hourly: about 24 hours with traffic instead of 288 five-minute points.
    assert 20 <= week <= 26 < day
    assert driver.execute_script("return window.__sameDocument") == "not reloaded"


def test_tablet_width_has_no_horizontal_scroll(driver: Any, dashboard: Dashboard) -> None:
    driver.set_window_size(*TABLET)
    open_dashboard(driver, dashboard.page(dashboard.tokens.admin))

    widths = driver.execute_script(
        "const e = document.documentElement; return [e.scrollWidth, e.clientWidth]"
    )
    assert widths[0] <= widths[1], f"page {widths[0]} px wide in a {widths[1]} px viewport"
    table = driver.execute_script(
        "const e = document.querySelector('.table-wrap'); return [e.scrollWidth, e.clientWidth]"
    )
    assert table[0] <= table[1], f"API table {table[0]} px wide in a {table[1]} px panel"
    # Every chart fits its panel.
    for svg in driver.find_elements(By.CSS_SELECTOR, ".chart svg"):
        panel = svg.find_element(By.XPATH, "ancestor::section")
        assert svg.rect["width"] <= panel.rect["width"]
    save_artifact(driver, "dashboard-tablet.png")


def test_a_refused_token_brings_back_the_login_form(driver: Any, dashboard: Dashboard) -> None:
    driver.get(dashboard.page("dp1-not-a-real-token"))
    wait_for(driver, lambda d: page_state(d) == "login", "the login form")
    assert "refused" in driver.find_element(By.ID, "login-error").text
    assert driver.execute_script("return sessionStorage.getItem('dealerpulse.token')") is None

    field = driver.find_element(By.ID, "token-input")
    field.send_keys(dashboard.tokens.dealer)
    driver.find_element(By.CSS_SELECTOR, "#login-form button[type=submit]").click()

    wait_for(driver, lambda d: page_state(d) == "ready", "the dashboard after signing in")
    assert tile_text(driver, "responseTime") == "165 ms"


def test_a_rate_limited_page_says_so_and_waits_as_told(driver: Any, dashboard: Dashboard) -> None:
    from reporter.core import ReporterCore
    from reporter.http.app import create_app
    from reporter.http.settings import HttpSettings

    # Four requests per window: the dealer list and the first refresh's three calls.
    settings = HttpSettings(rate_limit_requests=4)
    app = create_app(
        ReporterCore(dashboard.store, dashboard.clock), dashboard.store, settings, dashboard.clock
    )
    with served(app) as port:
        url = f"http://127.0.0.1:{port}/?token={dashboard.tokens.dealer}&refresh=1"
        open_dashboard(driver, url)
        refreshes = refresh_count(driver)

        wait_for(driver, lambda d: refresh_count(d) > refreshes, "the rate-limited refresh")

        assert page_state(driver) == "error"
        status = driver.find_element(By.ID, "status-line").text
        waiting = re.search(r"Rate limited: next refresh in (\d+) s", status)
        assert waiting is not None, status
        # Retry-After (the rest of the 900 s window), not the 1 s refresh interval.
        assert int(waiting.group(1)) > 60
        assert "requests in" in driver.find_element(By.ID, "error-line").text
        # What the first refresh drew stays on the page.
        assert tile_text(driver, "responseTime") == "165 ms"
