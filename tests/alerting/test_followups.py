"""Repeat, escalation, grouping, the channel-failing alert and resolving by hand."""

from __future__ import annotations

import dataclasses

from sqlalchemy import select

from collector.alerting.abc import Notifier, OutgoingMessage, Receipt
from collector.alerting.channel_health import CHANNEL_FAILING
from collector.alerting.dispatch import Dispatcher, DispatchReport
from collector.alerting.engine import AlertEngine, EngineSettings
from collector.alerting.errors import PermanentSendError
from collector.alerting.manage import acknowledge_alert, resolve_alert
from collector.alerting.notifiers import SmtpNotifier
from collector.alerting.policy import FollowUpPolicy
from collector.store import SQLAlchemyMetricStore
from collector.store.schema import system_alerts
from dealerpulse.clock import to_unix_ms

from .conftest import Mailbox
from .factories import batch, sample
from .test_dispatch import POLICY, CountingNotifier, Scenario

FOLLOW = FollowUpPolicy(
    repeat_interval_s=3600, escalate_after_s=600, escalation_channels=("pager",)
)


def _with_follow_ups(scenario: Scenario) -> Scenario:
    scenario.engine = AlertEngine(
        scenario.store.engine, scenario.clock, EngineSettings(follow_up=FOLLOW)
    )
    return scenario


def _kinds(rows: list[object]) -> list[tuple[str, str]]:
    return [(row.kind, row.channel) for row in rows]  # type: ignore[attr-defined]


def test_a_critical_still_firing_repeats_once_per_interval(store: SQLAlchemyMetricStore) -> None:
    scenario = _with_follow_ups(Scenario(store, ("slack",)))
    scenario.cpu(95)
    for _ in range(4 * 60 - 1):  # one hour minus 15 s of evaluations every 15 s
        scenario.cpu(95)
    assert [row.kind for row in scenario.outbox() if row.channel == "slack"] == ["firing"]
    scenario.cpu(95)
    scenario.cpu(95)
    repeats = [row for row in scenario.outbox() if row.kind == "repeat"]
    assert [row.idempotency_key.split("-")[1:4] for row in repeats] == [
        [str(repeats[0].episode_id), "repeat", "1"]
    ]


def test_an_unacknowledged_critical_escalates_once(store: SQLAlchemyMetricStore) -> None:
    scenario = _with_follow_ups(Scenario(store, ("slack",)))
    scenario.cpu(95)
    for _ in range(40):  # ten minutes
        scenario.cpu(95)
    escalations = [row for row in scenario.outbox() if row.kind == "escalation"]
    assert [
        (row.channel, row.idempotency_key.endswith("-escalation-pager")) for row in escalations
    ] == [("pager", True)]


def test_an_acknowledged_critical_does_not_escalate(store: SQLAlchemyMetricStore) -> None:
    scenario = _with_follow_ups(Scenario(store, ("slack",)))
    scenario.cpu(95)
    (firing,) = scenario.outbox()
    acknowledge_alert(store.engine, firing.episode_id, "ops", scenario.clock.now())
    for _ in range(45):
        scenario.cpu(95)
    assert "escalation" not in {row.kind for row in scenario.outbox()}


def _two_dealer_alerts(store: SQLAlchemyMetricStore) -> Scenario:
    """Two episodes of one dealer (two agents) firing in one tick."""
    scenario = Scenario(store, ("slack",))
    scenario.clock.advance(15)
    now = scenario.clock.now()
    for seq, agent in enumerate(("agent-1", "agent-2"), start=1):
        point = sample("cpu.percent", 95, to_unix_ms(now))
        store.write_batches([batch(agent, seq, samples=(point,))], now)
    scenario.engine.tick()
    return scenario


def test_a_burst_for_one_dealer_goes_out_as_one_message_after_group_wait(
    store: SQLAlchemyMetricStore,
) -> None:
    scenario = _two_dealer_alerts(store)
    counting = CountingNotifier()
    policy = dataclasses.replace(POLICY, group_wait_s=30)
    dispatcher = Dispatcher(store.engine, {"slack": counting}, scenario.clock, policy)
    assert dispatcher.run_once() == DispatchReport()  # the first waits for the group
    scenario.clock.advance(30)
    assert dispatcher.run_once() == DispatchReport(sent=2)
    assert counting.messages == 1 and len(counting.keys) == 2
    rows = scenario.outbox()
    assert {row.status for row in rows} == {"sent"}
    assert dispatcher.run_once() == DispatchReport()


def test_a_grouped_email_lists_each_alert(
    store: SQLAlchemyMetricStore, smtp_server: Mailbox
) -> None:
    scenario = _two_dealer_alerts(store)
    email = SmtpNotifier(
        host="127.0.0.1",
        port=smtp_server.port,
        sender="pulse@dealerpulse.invalid",
        recipients=["ops@acme.invalid"],
        security="none",
    )
    assert scenario.dispatcher({"email": email, "slack": email}).run_once() == DispatchReport(
        sent=2
    )
    (message,) = smtp_server.messages
    assert message["Subject"].strip() == "[2 ALERTS] dealer acme-motors"
    plain, html_part = message.get_body(("plain",)), message.get_body(("html",))
    assert plain is not None and html_part is not None
    text = plain.get_content()
    assert "agent-1" in text and "agent-2" in text
    html = html_part.get_content()
    assert html.count("<li>") == 2


class Refusing(Notifier):
    def __init__(self) -> None:
        self.refuse = True

    def send(self, message: OutgoingMessage) -> Receipt:
        if self.refuse:
            raise PermanentSendError("slack chat.postMessage: HTTP 404: channel_not_found")
        return Receipt("ok")


def test_a_refusing_channel_alerts_the_others_until_it_works_again(
    store: SQLAlchemyMetricStore,
) -> None:
    scenario = Scenario(store, ("slack",))
    refusing, email = Refusing(), CountingNotifier()
    dispatcher = scenario.dispatcher({"slack": refusing, "email": email})
    scenario.cpu(95)
    assert dispatcher.run_once() == DispatchReport(failed=1)
    assert dispatcher.run_once() == DispatchReport(sent=1)
    (alert_key,) = email.keys
    scenario.cpu(10)
    scenario.cpu(10)  # resolved: a second refusal does not open a second channel alert
    assert dispatcher.run_once() == DispatchReport(failed=1)
    with store.engine.connect() as connection:
        failing = list(
            connection.execute(select(system_alerts).where(system_alerts.c.type == CHANNEL_FAILING))
        )
    assert len(failing) == 1 and "channel_not_found" in failing[0].message
    assert failing[0].labels == {"channel": "slack"}

    refusing.refuse = False
    scenario.cpu(95)
    assert dispatcher.run_once() == DispatchReport(sent=1)  # slack works again
    assert dispatcher.run_once() == DispatchReport(sent=1)  # email hears of it
    assert [key.split("-")[2] for key in email.keys] == ["firing", "resolved"]
    assert alert_key.startswith(f"dp-{failing[0].id}-")
    with store.engine.connect() as connection:
        assert connection.scalar(
            select(system_alerts.c.resolved).where(system_alerts.c.id == failing[0].id)
        )


def test_resolving_by_hand_notifies_who_resolved_it_once(store: SQLAlchemyMetricStore) -> None:
    scenario = Scenario(store, ("slack", "email"))
    counting = CountingNotifier()
    dispatcher = scenario.dispatcher({"slack": counting, "email": counting})
    scenario.cpu(95)
    assert dispatcher.run_once() == DispatchReport(sent=2)
    episode_id = scenario.outbox()[0].episode_id
    resolve_alert(store.engine, episode_id, scenario.clock.now(), "maria")
    resolve_alert(store.engine, episode_id, scenario.clock.now(), "maria")  # no second notice
    resolved = [row for row in scenario.outbox() if row.kind == "resolved"]
    assert sorted(row.channel for row in resolved) == ["email", "slack"]
    assert all(row.payload["manual"] and row.payload["resolved_by"] == "maria" for row in resolved)
    assert dispatcher.run_once() == DispatchReport(sent=2)
