"""The outbox dispatcher, from the engine's rows to a local Slack and SMTP server."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select

from collector.alerting.abc import Notifier, OutgoingMessage, Receipt
from collector.alerting.dispatch import Dispatcher, DispatchPolicy, DispatchReport
from collector.alerting.engine import AlertEngine
from collector.alerting.notifiers import SlackNotifier, SmtpNotifier
from collector.alerting.repository import insert_rule
from collector.alerting.rules import Aggregation, Comparator, Condition, Rule, Thresholds
from collector.store import SQLAlchemyMetricStore
from collector.store.schema import notification_outbox
from dealerpulse.clock import FakeClock, to_unix_ms

from .conftest import Mailbox, free_loopback_port
from .factories import NOW, add_dealer, batch, sample
from .fake_slack import POST_MESSAGE, WEBHOOK_PATH, Answer, FakeSlack

POLICY = DispatchPolicy(lease_s=60, max_attempts=3, base_backoff_s=5, max_backoff_s=60)


class Scenario:
    """A dealer, a CPU rule without pending time, and an engine on a FakeClock."""

    def __init__(self, store: SQLAlchemyMetricStore, channels: tuple[str, ...]) -> None:
        add_dealer(store)
        rule = Rule(
            name="cpu hot",
            condition=Condition(
                "cpu.percent", Aggregation.MAX, 30, Comparator.GT, Thresholds(critical=90)
            ),
            channels=channels,
            alert_type="cpu",
        )
        with store.engine.begin() as connection:
            insert_rule(connection, rule, NOW)
        self.store, self.clock, self.seq = store, FakeClock(NOW), 0
        self.engine = AlertEngine(store.engine, self.clock)

    def cpu(self, value: float) -> None:
        """Advance 15 s, store one CPU sample, evaluate."""
        self.clock.advance(15)
        self.seq += 1
        point = sample("cpu.percent", value, to_unix_ms(self.clock.now()))
        self.store.write_batches([batch(seq=self.seq, samples=(point,))], self.clock.now())
        self.engine.tick()

    def dispatcher(self, notifiers: dict[str, Notifier]) -> Dispatcher:
        return Dispatcher(self.store.engine, notifiers, self.clock, POLICY)

    def outbox(self) -> list[Any]:
        query = select(notification_outbox).order_by(notification_outbox.c.id)
        with self.store.engine.connect() as connection:
            return list(connection.execute(query))


def _web(slack: FakeSlack) -> SlackNotifier:
    return SlackNotifier(token="xoxb-test", channel="C0ALERTS", base_url=slack.api_url)


def test_one_firing_and_one_resolved_per_channel_end_to_end(
    store: SQLAlchemyMetricStore, slack: FakeSlack, smtp_server: Mailbox
) -> None:
    scenario = Scenario(store, ("slack", "email"))
    email = SmtpNotifier(
        host="127.0.0.1",
        port=smtp_server.port,
        sender="pulse@dealerpulse.invalid",
        recipients=["ops@acme.invalid"],
        security="none",
    )
    dispatcher = scenario.dispatcher({"slack": _web(slack), "email": email})

    scenario.cpu(95)
    assert dispatcher.run_once() == DispatchReport(sent=2)
    scenario.cpu(97)
    scenario.cpu(50)
    scenario.cpu(50)
    assert dispatcher.run_once() == DispatchReport(sent=2)
    assert dispatcher.run_once() == DispatchReport()

    firing, resolved = slack.received(POST_MESSAGE)
    assert "[FIRING] critical" in firing["text"] and "[RESOLVED]" in resolved["text"]
    assert resolved["thread_ts"] == slack.state.history[0]["ts"]
    subjects = [message["Subject"].strip() for message in smtp_server.messages]
    assert [subject.split("]")[0] for subject in subjects] == ["[FIRING", "[RESOLVED"]
    assert {row.status for row in scenario.outbox()} == {"sent"}
    assert all(row.attempts == 1 and row.sent_at is not None for row in scenario.outbox())


def test_a_429_waits_for_retry_after(store: SQLAlchemyMetricStore, slack: FakeSlack) -> None:
    scenario = Scenario(store, ("slack",))
    slack.script(WEBHOOK_PATH, Answer(429, "rate_limited", (("Retry-After", "30"),)))
    dispatcher = scenario.dispatcher({"slack": SlackNotifier(webhook_url=slack.webhook_url)})
    scenario.cpu(95)

    assert dispatcher.run_once() == DispatchReport(retrying=1)
    (row,) = scenario.outbox()
    assert row.status == "pending" and "429" in row.last_error
    assert row.next_attempt_at == scenario.clock.now() + timedelta(seconds=30)
    scenario.clock.advance(29)
    assert dispatcher.run_once() == DispatchReport()
    scenario.clock.advance(1)
    assert dispatcher.run_once() == DispatchReport(sent=1)
    assert len(slack.received(WEBHOOK_PATH)) == 2


def test_5xx_backs_off_then_gives_up_recording_the_error(
    store: SQLAlchemyMetricStore, slack: FakeSlack
) -> None:
    scenario = Scenario(store, ("slack",))
    slack.script(WEBHOOK_PATH, *[Answer(500, "internal_error")] * 3)
    dispatcher = scenario.dispatcher({"slack": SlackNotifier(webhook_url=slack.webhook_url)})
    scenario.cpu(95)

    assert dispatcher.run_once() == DispatchReport(retrying=1)
    scenario.clock.advance(5)
    assert dispatcher.run_once() == DispatchReport(retrying=1)
    scenario.clock.advance(9)
    assert dispatcher.run_once() == DispatchReport()  # the second delay is 10 s
    scenario.clock.advance(1)
    assert dispatcher.run_once() == DispatchReport(failed=1)
    (row,) = scenario.outbox()
    assert row.status == "failed" and row.attempts == 3
    assert "gave up after 3 attempts" in row.last_error and "500" in row.last_error


def test_a_4xx_fails_at_once_with_the_error(store: SQLAlchemyMetricStore, slack: FakeSlack) -> None:
    scenario = Scenario(store, ("slack",))
    slack.script(POST_MESSAGE, Answer(404, {"ok": False, "error": "channel_not_found"}))
    scenario.cpu(95)
    assert scenario.dispatcher({"slack": _web(slack)}).run_once() == DispatchReport(failed=1)
    (row,) = scenario.outbox()
    assert row.status == "failed" and "channel_not_found" in row.last_error


def test_a_resolved_waits_for_its_firing(store: SQLAlchemyMetricStore, slack: FakeSlack) -> None:
    scenario = Scenario(store, ("slack",))
    slack.script(POST_MESSAGE, Answer(500, {"ok": False, "error": "fatal_error"}))
    dispatcher = scenario.dispatcher({"slack": _web(slack)})
    scenario.cpu(95)
    assert dispatcher.run_once() == DispatchReport(retrying=1)
    scenario.cpu(10)
    scenario.cpu(10)
    # The resolved is held back while its firing is unsent, then goes as a reply.
    assert dispatcher.run_once() == DispatchReport(sent=1)
    assert dispatcher.run_once() == DispatchReport(sent=1)
    firing, resolved = slack.state.history
    assert "[FIRING]" in firing["text"] and resolved["thread_ts"] == firing["ts"]


def test_an_unknown_channel_is_recorded(store: SQLAlchemyMetricStore) -> None:
    scenario = Scenario(store, ("pager",))
    scenario.cpu(95)
    assert scenario.dispatcher({}).run_once() == DispatchReport(failed=1)
    assert "no notifier configured for channel 'pager'" in scenario.outbox()[0].last_error


class Crash(BaseException):
    """The process dies here (not an Exception: nothing in the dispatcher catches it)."""


class CrashingNotifier(Notifier):
    def __init__(self, real: Notifier, *, after_send: bool) -> None:
        self.real, self.after_send = real, after_send

    def send(self, message: OutgoingMessage) -> Receipt:
        if self.after_send:
            self.real.send(message)
        raise Crash


@pytest.mark.parametrize("after_send", [False, True], ids=["before-send", "after-send"])
def test_a_crash_around_the_send_neither_loses_nor_repeats(
    store: SQLAlchemyMetricStore, slack: FakeSlack, after_send: bool
) -> None:
    scenario = Scenario(store, ("slack",))
    scenario.cpu(95)
    crashing = CrashingNotifier(_web(slack), after_send=after_send)
    with pytest.raises(Crash):
        scenario.dispatcher({"slack": crashing}).run_once()

    restarted = scenario.dispatcher({"slack": _web(slack)})
    assert restarted.run_once() == DispatchReport()  # the claim's lease still holds
    scenario.clock.advance(POLICY.lease_s)
    expected = DispatchReport(found_sent=1) if after_send else DispatchReport(sent=1)
    assert restarted.run_once() == expected
    (post,) = slack.received(POST_MESSAGE)
    (row,) = scenario.outbox()
    assert post["metadata"]["event_payload"]["idempotency_key"] == row.idempotency_key
    assert row.status == "sent" and row.receipt == slack.state.history[0]["ts"]


class CountingNotifier(Notifier):
    def __init__(self) -> None:
        self.keys: list[str] = []
        self.messages = 0
        self.lock = threading.Lock()

    def send(self, message: OutgoingMessage) -> Receipt:
        with self.lock:
            # A group message stands for each of its rows.
            self.keys.extend(message.payload.get("keys") or [message.idempotency_key])
            self.messages += 1
        return Receipt()


def test_dispatchers_running_together_send_each_row_once(store: SQLAlchemyMetricStore) -> None:
    scenario = Scenario(store, ("a", "b", "c", "d"))
    for _ in range(3):  # three episodes (not yet flapping): 3 x 4 firing + 3 x 4 resolved
        scenario.cpu(95)
        scenario.cpu(10)
        scenario.cpu(10)  # the 30 s window has forgotten the 95
    counting = CountingNotifier()
    dispatchers = [scenario.dispatcher(dict.fromkeys("abcd", counting)) for _ in range(3)]
    errors: list[BaseException] = []

    def drain(dispatcher: Dispatcher) -> None:
        try:
            for _ in range(20):  # bounded: each pass sends what is due
                dispatcher.run_once()
        except BaseException as error:  # collected and asserted below
            errors.append(error)

    threads = [threading.Thread(target=drain, args=(d,)) for d in dispatchers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads) and errors == []
    assert len(counting.keys) == len(set(counting.keys)) == 24
    assert {row.status for row in scenario.outbox()} == {"sent"}


def test_slack_and_smtp_down_for_an_hour_get_each_message_exactly_once(
    store: SQLAlchemyMetricStore, slack: FakeSlack
) -> None:
    """The collector's own policy (the defaults): Slack answers 503 and the SMTP server
    is stopped for an hour of injected time; once both are back, each notification
    arrives once."""
    scenario = Scenario(store, ("slack", "email"))
    mailbox = Mailbox(port=free_loopback_port())
    email = SmtpNotifier(
        host="127.0.0.1",
        port=mailbox.port,
        sender="pulse@dealerpulse.invalid",
        recipients=["ops@acme.invalid"],
        security="none",
    )
    slack.script(WEBHOOK_PATH, *[Answer(503, "service_unavailable")] * 1000)
    dispatcher = Dispatcher(
        store.engine,
        {"slack": SlackNotifier(webhook_url=slack.webhook_url), "email": email},
        scenario.clock,
        DispatchPolicy(),
    )
    scenario.cpu(95)
    outage_ends = scenario.clock.now() + timedelta(hours=1)
    while scenario.clock.now() < outage_ends:  # bounded: one pass per injected minute
        assert dispatcher.run_once().sent == 0
        scenario.clock.advance(60)
    attempts_in_outage = len(slack.received(WEBHOOK_PATH))
    assert attempts_in_outage >= 2
    assert {row.status for row in scenario.outbox()} == {"pending"}

    with slack.state.lock:
        slack.state.scripts.clear()
    controller = Controller(mailbox, hostname="127.0.0.1", port=mailbox.port, ready_timeout=10)
    controller.start()
    try:
        for _ in range(180):  # at most three injected hours more
            dispatcher.run_once()
            if {row.status for row in scenario.outbox()} == {"sent"}:
                break
            scenario.clock.advance(60)
    finally:
        controller.stop()
    assert {row.status for row in scenario.outbox()} == {"sent"}
    assert len(slack.received(WEBHOOK_PATH)) == attempts_in_outage + 1
    assert "[FIRING]" in slack.received(WEBHOOK_PATH)[-1]["text"]
    assert len(mailbox.messages) == 1
    assert dispatcher.run_once() == DispatchReport()
    assert (
        len(mailbox.messages) == 1 and len(slack.received(WEBHOOK_PATH)) == attempts_in_outage + 1
    )
