"""Rules: validation names the bad field; the seed's defaults and their variables."""

from __future__ import annotations

import dataclasses

import pytest

from collector.alerting.rules import (
    Aggregation,
    Comparator,
    Condition,
    Rule,
    RuleError,
    RuleKind,
    Severity,
    Thresholds,
    builtin_rules_from_env,
    validate_rule,
)
from dealerpulse.config import ConfigError


def _rule(**changes: object) -> Rule:
    thresholds = Thresholds(warning=200.0, critical=500.0, warning_recovery=180.0)
    condition = Condition("api.response_time_ms", Aggregation.AVG, 300, Comparator.GT, thresholds)
    return dataclasses.replace(Rule("slow api", condition, for_s=60), **changes)  # type: ignore[arg-type]


def _with_thresholds(comparator: Comparator = Comparator.GT, **levels: float) -> Rule:
    condition = Condition("cpu.percent", Aggregation.AVG, 60, comparator, Thresholds(**levels))
    return Rule("cpu", condition)


def test_a_sound_rule_validates() -> None:
    rule = _rule()
    assert validate_rule(rule) is rule


@pytest.mark.parametrize(
    ("rule", "named"),
    [
        (_rule(name=" "), "name"),
        (_rule(for_s=-1), "for_s"),
        (_rule(channels=("slack", "slack")), "channels"),
        (_with_thresholds(), "thresholds"),
        (_with_thresholds(warning=80, warning_recovery=85), "warning_recovery"),
        (_with_thresholds(Comparator.LT, warning=10, warning_recovery=5), "warning_recovery"),
        (_with_thresholds(warning=90, critical=80), "critical_threshold"),
        (_with_thresholds(critical_recovery=3), "thresholds"),
        (_with_thresholds(warning=80, critical_recovery=3), "critical_recovery"),
        (_with_thresholds(warning=float("nan")), "warning_threshold"),
    ],
)
def test_validation_names_the_bad_field(rule: Rule, named: str) -> None:
    with pytest.raises(RuleError, match=named):
        validate_rule(rule)


def test_bad_metric_and_window_are_named() -> None:
    condition = _rule().condition
    with pytest.raises(RuleError, match="metric"):
        validate_rule(_rule(condition=dataclasses.replace(condition, metric="CPU %")))
    with pytest.raises(RuleError, match="window_s"):
        validate_rule(_rule(condition=dataclasses.replace(condition, window_s=0)))


def test_hysteresis_keeps_a_held_severity_until_its_recovery() -> None:
    thresholds = Thresholds(warning=200, critical=500, warning_recovery=180, critical_recovery=450)
    gt = Comparator.GT
    assert thresholds.level(190, gt, None) is None
    assert thresholds.level(190, gt, Severity.WARNING) is Severity.WARNING
    assert thresholds.level(180, gt, Severity.WARNING) is None
    assert thresholds.level(470, gt, Severity.WARNING) is Severity.WARNING
    assert thresholds.level(470, gt, Severity.CRITICAL) is Severity.CRITICAL
    assert thresholds.level(440, gt, Severity.CRITICAL) is Severity.WARNING
    assert thresholds.level(100, gt, Severity.CRITICAL) is None


def test_label_matchers_select_series() -> None:
    rule = _rule(label_matchers=(("endpoint", "/api/leads"),))
    assert rule.matches((("endpoint", "/api/leads"), ("method", "GET")))
    assert not rule.matches((("endpoint", "/api/cars"),))
    assert not rule.matches(())


def test_builtin_defaults_are_the_seeds() -> None:
    rules = {rule.alert_type: rule for rule in builtin_rules_from_env({})}

    def trigger(name: str) -> tuple[str, float | None, float | None]:
        t = rules[name].condition.thresholds
        return rules[name].condition.metric, t.warning, t.critical

    assert trigger("response_time") == ("api.response_time_ms", 200.0, None)
    assert trigger("error_rate") == ("api.error_rate_percent", None, 0.1)
    assert trigger("cpu") == ("cpu.percent", 80.0, None)
    assert trigger("memory") == ("memory.percent", None, 85.0)
    assert trigger("disk")[0] == "disk.used_percent"
    assert rules["agent_down"].kind is RuleKind.AGENT_SILENCE
    assert all(rule.builtin for rule in rules.values())


def test_the_seed_variables_change_the_defaults() -> None:
    env = {"ALERT_THRESHOLD_RESPONSE_TIME": "350ms", "ALERT_THRESHOLD_ERROR_RATE": "0.5%"}
    rules = {rule.alert_type: rule for rule in builtin_rules_from_env(env, ("slack",))}
    assert rules["response_time"].condition.thresholds.warning == 350.0
    assert rules["error_rate"].condition.thresholds.critical == 0.5
    assert rules["cpu"].channels == ("slack",)


def test_a_bad_variable_is_named() -> None:
    with pytest.raises(ConfigError, match="ALERT_THRESHOLD_CPU"):
        builtin_rules_from_env({"ALERT_THRESHOLD_CPU": "lots"})
    with pytest.raises(ConfigError, match="ALERT_THRESHOLD_MEMORY"):
        builtin_rules_from_env({"ALERT_THRESHOLD_MEMORY": "-5"})


def test_seed_performance_alert_request_maps_onto_a_dealer_rule() -> None:
    from collector.alerting.rules import rule_from_seed_request

    rule = rule_from_seed_request("responseTime", 350, "sunrise-motors", ("slack",))
    assert rule.dealer_id == "sunrise-motors"
    assert rule.condition.metric == "api.response_time_ms"
    assert rule.condition.thresholds.warning == 350.0
    assert rule.channels == ("slack",)
    assert not rule.builtin
    memory = rule_from_seed_request("memory", 90, "sunrise-motors")
    assert memory.condition.thresholds.critical == 90.0


@pytest.mark.parametrize(
    ("alert_type", "threshold", "dealer", "field"),
    [
        ("latency", 200, "d", "alertType"),
        ("cpu", -1, "d", "threshold"),
        ("cpu", float("nan"), "d", "threshold"),
        ("cpu", "80", "d", "threshold"),
        ("cpu", 80, "", "dealerId"),
    ],
)
def test_bad_seed_alert_requests_name_the_field(
    alert_type: str, threshold: object, dealer: str, field: str
) -> None:
    from collector.alerting.rules import rule_from_seed_request

    with pytest.raises(RuleError, match=field):
        rule_from_seed_request(alert_type, threshold, dealer)  # type: ignore[arg-type]


def test_builtin_rules_keep_the_seed_defaults() -> None:
    rules = {r.alert_type: r for r in builtin_rules_from_env({})}
    assert rules["response_time"].condition.thresholds.warning == 200.0
    assert rules["error_rate"].condition.thresholds.critical == 0.1
    assert rules["cpu"].condition.thresholds.warning == 80.0
    assert rules["memory"].condition.thresholds.critical == 85.0
    assert rules["disk"].condition.thresholds.critical == 90.0
    assert "agent_down" in rules
