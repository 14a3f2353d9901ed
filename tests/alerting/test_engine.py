"""The evaluation tick against a real store (SQLite and PostgreSQL), time from a FakeClock."""

from __future__ import annotations

import dataclasses
import threading
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from collector.alerting.engine import AlertEngine, EngineSettings, TickReport
from collector.alerting.evaluate import FlapPolicy
from collector.alerting.repository import insert_rule, load_rules, sync_builtin_rules
from collector.alerting.rules import (
    Aggregation,
    Comparator,
    Condition,
    Rule,
    RuleKind,
    Thresholds,
    builtin_rules_from_env,
)
from collector.store import SQLAlchemyMetricStore
from collector.store.schema import alert_states, notification_outbox, system_alerts
from dealerpulse.clock import FakeClock, to_unix_ms
from dealerpulse.model import EndpointStat

from .factories import DEALER, NOW, add_dealer, batch, sample

CPU_RULE = Rule(
    name="cpu hot",
    condition=Condition(
        "cpu.percent",
        Aggregation.AVG,
        60,
        Comparator.GT,
        Thresholds(warning=80, critical=95, warning_recovery=70),
    ),
    for_s=30,
    channels=("slack", "email"),
    alert_type="cpu",
)


class Feed:
    """Writes one sample per call for one agent, at the clock's time."""

    def __init__(self, store: SQLAlchemyMetricStore, clock: FakeClock, agent_id: str = "agent-1"):
        self.store, self.clock, self.agent_id, self.seq = store, clock, agent_id, 0

    def cpu(self, value: float, **labels: str) -> None:
        self.seq += 1
        point = sample("cpu.percent", value, to_unix_ms(self.clock.now()), **labels)
        self.store.write_batches(
            [batch(self.agent_id, self.seq, samples=(point,))], self.clock.now()
        )


def _rows(store: SQLAlchemyMetricStore, table: Any) -> list[Any]:
    with store.engine.connect() as connection:
        return list(connection.execute(select(table).order_by(*table.primary_key.columns)))


def _add_rule(store: SQLAlchemyMetricStore, rule: Rule) -> int:
    with store.engine.begin() as connection:
        return insert_rule(connection, rule, NOW)


def _step(clock: FakeClock, engine: AlertEngine, feed: Feed, value: float) -> TickReport:
    clock.advance(15)
    feed.cpu(value)
    return engine.tick()


def test_an_episode_fires_after_for_s_and_resolves_with_one_notice_each(
    store: SQLAlchemyMetricStore,
) -> None:
    add_dealer(store)
    _add_rule(store, CPU_RULE)
    clock = FakeClock(NOW)
    engine, feed = AlertEngine(store.engine, clock), Feed(store, clock)

    feed.cpu(90)
    engine.tick()
    assert [row.phase for row in _rows(store, alert_states)] == ["pending"]
    assert _rows(store, system_alerts) == []
    assert _step(clock, engine, feed, 90).opened == 0
    report = _step(clock, engine, feed, 90)
    assert (report.subjects, report.opened, report.notifications) == (1, 1, 2)

    (episode,) = _rows(store, system_alerts)
    assert (episode.dealer_id, episode.agent_id, episode.type) == (DEALER, "agent-1", "cpu")
    assert (episode.severity, episode.state, episode.resolved) == ("warning", "firing", False)
    assert episode.threshold == 80 and episode.value == 90
    assert "cpu hot" in episode.message and episode.started_at == clock.now()
    assert sorted((r.channel, r.kind) for r in _rows(store, notification_outbox)) == [
        ("email", "firing"),
        ("slack", "firing"),
    ]

    _step(clock, engine, feed, 99)  # t=45
    _step(clock, engine, feed, 20)  # t=60: avg(90, 90, 99, 20) = 74.75, above the recovery 70
    assert _rows(store, system_alerts)[0].state == "firing"
    for _ in range(7):
        _step(clock, engine, feed, 20)  # t=75: avg(90, 99, 20, 20) = 57.25 resolves
    (episode,) = _rows(store, system_alerts)
    assert (episode.state, episode.resolved) == ("resolved", True)
    assert episode.resolved_at == NOW + timedelta(seconds=75)
    kinds = sorted((r.channel, r.kind) for r in _rows(store, notification_outbox))
    assert kinds.count(("slack", "firing")) == 1 and kinds.count(("slack", "resolved")) == 1
    assert kinds.count(("email", "firing")) == 1 and kinds.count(("email", "resolved")) == 1
    (state,) = _rows(store, alert_states)  # ok, remembering its transitions for flapping
    assert (state.phase, state.episode_id, len(state.flap_history)) == ("ok", None, 2)
    clock.advance(3600)
    engine.tick()
    assert _rows(store, alert_states) == []  # a quiet ok is not kept
    assert len({r.idempotency_key for r in _rows(store, notification_outbox)}) == len(kinds)


def test_label_matchers_and_dealer_scope(store: SQLAlchemyMetricStore) -> None:
    add_dealer(store)
    add_dealer(store, "other-dealer")
    rule = Rule(
        name="one core",
        condition=Condition(
            "cpu.percent", Aggregation.MAX, 60, Comparator.GT, Thresholds(critical=50)
        ),
        dealer_id=DEALER,
        label_matchers=(("core", "0"),),
        channels=("slack",),
    )
    _add_rule(store, rule)
    clock = FakeClock(NOW)
    t = to_unix_ms(NOW)
    store.write_batches(
        [
            batch(
                samples=(
                    sample("cpu.percent", 90, t, core="0"),
                    sample("cpu.percent", 99, t, core="1"),
                )
            ),
            batch(
                "agent-9",
                1,
                dealer_id="other-dealer",
                samples=(sample("cpu.percent", 99, t, core="0"),),
            ),
        ],
        NOW,
    )
    AlertEngine(store.engine, clock).tick()
    (episode,) = _rows(store, system_alerts)
    assert (episode.dealer_id, episode.labels, episode.severity) == (
        DEALER,
        {"core": "0"},
        "critical",
    )


def test_agent_silence_has_a_startup_grace_and_threshold_rules_ignore_missing_data(
    store: SQLAlchemyMetricStore,
) -> None:
    add_dealer(store)
    clock = FakeClock(NOW)
    with store.engine.begin() as connection:
        sync_builtin_rules(connection, builtin_rules_from_env({}, ("slack",)), NOW)
        insert_rule(connection, CPU_RULE, NOW)
    feed = Feed(store, clock)
    feed.cpu(99)  # the agent is heard from once, at NOW, with a hot CPU
    clock.advance(3600)  # ... and then the collector restarts an hour later
    engine = AlertEngine(store.engine, clock)
    engine.tick()
    assert _rows(store, system_alerts) == []  # grace: silence counts from the start

    for _ in range(12):
        clock.advance(15)
        engine.tick()
    assert _rows(store, system_alerts) == []  # 180 s of silence is not more than 180 s
    clock.advance(15)
    engine.tick()
    (down,) = _rows(store, system_alerts)
    assert (down.type, down.severity, down.agent_id) == ("agent_down", "critical", "agent-1")
    assert {r.kind for r in _rows(store, notification_outbox)} == {"firing"}

    feed.cpu(10)  # the agent is back
    engine.tick()
    (down,) = _rows(store, system_alerts)
    assert down.resolved


def test_the_api_error_rate_rule_reads_api_performance(store: SQLAlchemyMetricStore) -> None:
    add_dealer(store)
    clock = FakeClock(NOW)
    with store.engine.begin() as connection:
        sync_builtin_rules(connection, builtin_rules_from_env({}, ("slack",)), NOW)
    end = to_unix_ms(NOW)
    stat = EndpointStat(
        "/api/leads", "GET", end - 60_000, end, count=1000, errors=5, duration_sum_ms=50_000
    )
    store.write_batches([batch(endpoints=(stat,))], NOW)
    engine = AlertEngine(store.engine, clock)
    engine.tick()
    clock.advance(60)
    engine.tick()
    (episode,) = _rows(store, system_alerts)
    assert (episode.type, episode.severity) == ("error_rate", "critical")
    assert episode.value == 0.5  # percent of requests


def test_the_builtins_follow_the_configuration(store: SQLAlchemyMetricStore) -> None:
    with store.engine.begin() as connection:
        sync_builtin_rules(connection, builtin_rules_from_env({}), NOW)
        sync_builtin_rules(connection, builtin_rules_from_env({"ALERT_THRESHOLD_CPU": "70"}), NOW)
        rules = {rule.alert_type: rule for rule in load_rules(connection)}
    assert len(rules) == 6
    assert rules["cpu"].condition.thresholds.warning == 70
    assert rules["agent_down"].kind is RuleKind.AGENT_SILENCE


def test_collectors_ticking_together_write_each_notification_once(
    store: SQLAlchemyMetricStore,
) -> None:
    add_dealer(store)
    _add_rule(store, CPU_RULE)
    clock = FakeClock(NOW)
    feed = Feed(store, clock)
    engines = [AlertEngine(store.engine, clock) for _ in range(3)]
    errors: list[BaseException] = []

    def tick(engine: AlertEngine) -> None:
        try:
            engine.tick()
        except BaseException as error:  # collected and asserted below
            errors.append(error)

    for value in (90, 90, 90, 90, 20, 20, 20, 20, 20, 20):
        clock.advance(15)
        feed.cpu(value)
        threads = [threading.Thread(target=tick, args=(engine,)) for engine in engines]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert not any(thread.is_alive() for thread in threads)
    assert errors == []
    assert len(_rows(store, system_alerts)) == 1
    kinds = sorted((r.channel, r.kind) for r in _rows(store, notification_outbox))
    assert kinds == [
        ("email", "firing"),
        ("email", "resolved"),
        ("slack", "firing"),
        ("slack", "resolved"),
    ]


def test_the_state_outlives_the_engine(store: SQLAlchemyMetricStore) -> None:
    """A collector restart mid-pending goes on from the stored state."""
    add_dealer(store)
    _add_rule(store, CPU_RULE)
    clock = FakeClock(NOW)
    feed = Feed(store, clock)
    feed.cpu(90)
    AlertEngine(store.engine, clock).tick()
    _step(clock, AlertEngine(store.engine, clock), feed, 90)
    assert _rows(store, system_alerts) == []
    _step(clock, AlertEngine(store.engine, clock), feed, 90)  # 30 s after the first breach
    (episode,) = _rows(store, system_alerts)
    assert episode.started_at == NOW + timedelta(seconds=30)
    assert len(_rows(store, notification_outbox)) == 2


def test_flapping_is_remembered_between_ticks(store: SQLAlchemyMetricStore) -> None:
    add_dealer(store)
    rule = Rule(
        name="cpu spikes",
        condition=Condition(
            "cpu.percent", Aggregation.MAX, 10, Comparator.GT, Thresholds(critical=90)
        ),
        channels=("slack",),
    )
    _add_rule(store, rule)
    clock = FakeClock(NOW)
    flap = FlapPolicy(max_changes=3, window_s=600, settle_s=120)
    engine, feed = AlertEngine(store.engine, clock, EngineSettings(flap=flap)), Feed(store, clock)
    for value in (95, 10) * 6:
        _step(clock, engine, feed, value)
    kinds = Counter(row.kind for row in _rows(store, notification_outbox))
    assert kinds == {"firing": 2, "resolved": 2, "flapping": 1}
    assert len(_rows(store, system_alerts)) == 6  # every episode is on record
    for _ in range(9):
        _step(clock, engine, feed, 95)  # settles 120 s after the last change
    kinds = Counter(row.kind for row in _rows(store, notification_outbox))
    assert kinds == {"firing": 3, "resolved": 2, "flapping": 1}


def test_a_rule_the_store_cannot_answer_does_not_stop_the_others(
    store: SQLAlchemyMetricStore, caplog: pytest.LogCaptureFixture
) -> None:
    add_dealer(store)
    unanswerable = Rule(
        name="p95 latency",
        condition=Condition(
            "api.response_time_ms", Aggregation.P95, 60, Comparator.GT, Thresholds(warning=1)
        ),
    )
    _add_rule(store, unanswerable)
    _add_rule(store, dataclasses.replace(CPU_RULE, for_s=0))
    clock = FakeClock(NOW)
    Feed(store, clock).cpu(99)
    report = AlertEngine(store.engine, clock).tick()
    assert (report.rules, report.opened) == (1, 1)
    assert "'p95 latency' skipped: aggregation: api.response_time_ms supports" in caplog.text
