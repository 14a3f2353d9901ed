"""Silences in the dispatcher: held while covered, sent once after, dropped when moot."""

from __future__ import annotations

from datetime import timedelta

from collector.alerting.dispatch import DispatchReport
from collector.alerting.manage import SilenceSpec, create_silence, delete_silence
from collector.alerting.silencing import DROPPED_NOTE
from collector.store import SQLAlchemyMetricStore
from collector.store.schema import system_alerts

from .factories import DEALER
from .test_dispatch import POLICY, CountingNotifier, Scenario


def _silence(
    scenario: Scenario, minutes: float, dealer_id: str | None = DEALER, **labels: str
) -> int:
    now = scenario.clock.now()
    spec = SilenceSpec(
        dealer_id=dealer_id,
        rule_id=None,
        label_matchers=tuple(sorted(labels.items())),
        starts_at=now,
        ends_at=now + timedelta(minutes=minutes),
        created_by="ops",
    )
    created = create_silence(scenario.store.engine, spec, now)
    assert created.id is not None
    return created.id


def _kinds(notifier: CountingNotifier) -> list[str]:
    return [key.split("-")[2] for key in notifier.keys]


def test_a_firing_is_held_while_silenced_and_sent_once_when_the_silence_ends(
    store: SQLAlchemyMetricStore,
) -> None:
    scenario = Scenario(store, ("slack",))
    _silence(scenario, minutes=10)
    counting = CountingNotifier()
    scenario.cpu(95)
    assert scenario.dispatcher({"slack": counting}).run_once() == DispatchReport(held=1)
    scenario.cpu(96)  # evaluation goes on: the episode is open
    with store.engine.connect() as connection:
        states = connection.scalars(system_alerts.select().with_only_columns(system_alerts.c.state))
        assert list(states) == ["firing"]
    (row,) = scenario.outbox()
    assert row.status == "pending" and row.attempts == 0 and "held by silence" in row.last_error

    # A restarted dispatcher knows nothing in memory: the hold is in the row.
    restarted = scenario.dispatcher({"slack": counting})
    scenario.clock.advance(9 * 60 - 30)
    assert restarted.run_once() == DispatchReport(held=1)  # re-checked, still covered
    assert counting.keys == []
    scenario.clock.advance(60)
    assert restarted.run_once() == DispatchReport(sent=1)
    scenario.clock.advance(POLICY.lease_s * 2)
    assert restarted.run_once() == DispatchReport()
    assert _kinds(counting) == ["firing"]
    assert scenario.outbox()[0].status == "sent"


def test_a_resolved_during_the_silence_of_an_unsent_firing_is_dropped(
    store: SQLAlchemyMetricStore,
) -> None:
    scenario = Scenario(store, ("slack", "email"))
    _silence(scenario, minutes=5)
    counting = CountingNotifier()
    dispatcher = scenario.dispatcher({"slack": counting, "email": counting})
    scenario.cpu(95)
    assert dispatcher.run_once() == DispatchReport(held=2)
    scenario.cpu(10)
    scenario.cpu(10)  # resolved, still inside the silence
    assert dispatcher.run_once() == DispatchReport()  # the resolved rows wait for their firing
    scenario.clock.advance(5 * 60)

    assert dispatcher.run_once() == DispatchReport(dropped=2)
    assert dispatcher.run_once() == DispatchReport()
    assert counting.keys == []
    rows = scenario.outbox()
    assert sorted(row.kind for row in rows) == ["firing", "firing", "resolved", "resolved"]
    assert all(row.status == "failed" and row.last_error == DROPPED_NOTE for row in rows)


def test_a_resolved_during_a_silence_after_a_sent_firing_goes_out_when_it_ends(
    store: SQLAlchemyMetricStore,
) -> None:
    scenario = Scenario(store, ("slack",))
    counting = CountingNotifier()
    dispatcher = scenario.dispatcher({"slack": counting})
    scenario.cpu(95)
    assert dispatcher.run_once() == DispatchReport(sent=1)
    _silence(scenario, minutes=5)
    scenario.cpu(10)
    scenario.cpu(10)
    assert dispatcher.run_once() == DispatchReport(held=1)
    scenario.clock.advance(5 * 60)
    assert dispatcher.run_once() == DispatchReport(sent=1)
    assert _kinds(counting) == ["firing", "resolved"]


def test_a_silence_covers_only_its_dealer_and_labels(store: SQLAlchemyMetricStore) -> None:
    scenario = Scenario(store, ("slack",))
    _silence(scenario, minutes=10, mount="/var")  # the CPU samples carry no mount label
    _silence(scenario, minutes=10, dealer_id=None, host="other")
    counting = CountingNotifier()
    scenario.cpu(95)
    assert scenario.dispatcher({"slack": counting}).run_once() == DispatchReport(sent=1)


def test_a_deleted_silence_releases_its_rows_at_the_next_recheck(
    store: SQLAlchemyMetricStore,
) -> None:
    scenario = Scenario(store, ("slack",))
    silence_id = _silence(scenario, minutes=24 * 60)
    counting = CountingNotifier()
    dispatcher = scenario.dispatcher({"slack": counting})
    scenario.cpu(95)
    assert dispatcher.run_once() == DispatchReport(held=1)
    delete_silence(store.engine, silence_id)
    scenario.clock.advance(POLICY.silence_recheck_s)
    assert dispatcher.run_once() == DispatchReport(sent=1)
    assert _kinds(counting) == ["firing"]
