"""Alerting wired into the running collector: scheduled evaluation and dispatch, channels
from the settings, built-ins synced at start. Real gRPC server, real store, a local Slack;
a FakeClock is the alerting's "now" while the scheduler fires on fast real intervals."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable

import pytest
from sqlalchemy import select

from collector.alerting.channels import notifiers_from_settings
from collector.server import CollectorServer
from collector.settings import COLLECTOR_OPTIONS, CollectorSettings
from collector.store import SQLAlchemyMetricStore
from collector.store.schema import alert_rules
from dealerpulse.clock import FakeClock, to_unix_ms
from dealerpulse.config import ConfigError, resolve

from .factories import NOW, add_dealer, batch, sample
from .fake_slack import WEBHOOK_PATH, FakeSlack

FAST = CollectorSettings(alert_interval_s=0.05, dispatch_interval_s=0.05)
# Evaluation steps of 15 s: the built-in CPU rule averages 300 s and pends 60 s.
STEP_S = 15
MAX_STEPS = 40


async def _wait_until(condition: Callable[[], bool], what: str, timeout_s: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


class Scene:
    def __init__(self, store: SQLAlchemyMetricStore, server: CollectorServer, clock: FakeClock):
        self.store, self.server, self.clock, self.seq = store, server, clock, 0

    def write_cpu(self, value: float) -> None:
        self.seq += 1
        point = sample("cpu.percent", value, to_unix_ms(self.clock.now()))
        self.store.write_batches([batch("agent-1", self.seq, samples=(point,))], self.clock.now())

    async def settle(self) -> None:
        """Wait for a tick and a dispatch that both started after this call."""
        before = self.server.alert_job_stats()
        await _wait_until(
            lambda: (
                self.server.alert_job_stats().ticks >= before.ticks + 2
                and self.server.alert_job_stats().dispatches >= before.dispatches + 2
            ),
            "an evaluation and a dispatch",
        )

    async def step(self, cpu: float) -> None:
        self.clock.advance(STEP_S)
        self.write_cpu(cpu)
        await self.settle()


async def _run_until(scene: Scene, cpu: float, done: Callable[[], bool]) -> None:
    for _ in range(MAX_STEPS):
        if done():
            return
        await scene.step(cpu)
    raise AssertionError(f"not done after {MAX_STEPS} steps of cpu={cpu}")


def _headlines(slack: FakeSlack) -> list[str]:
    return [str(body.get("text", "")).splitlines()[0] for body in slack.received(WEBHOOK_PATH)]


def test_a_running_collector_notifies_one_firing_then_one_resolved(
    store: SQLAlchemyMetricStore, slack: FakeSlack
) -> None:
    clock = FakeClock(NOW)
    add_dealer(store)
    settings = dataclasses.replace(FAST, slack_webhook_url=slack.webhook_url)

    async def scenario() -> None:
        server = CollectorServer(store, "127.0.0.1:0", settings, clock)
        await server.start()
        scene = Scene(store, server, clock)
        try:
            await _run_until(scene, 95.0, lambda: len(_headlines(slack)) >= 1)
            for _ in range(3):  # nothing more while it stays hot
                await scene.step(95.0)
            fired = _headlines(slack)
            assert len(fired) == 1, fired
            assert fired[0].startswith("[FIRING] warning: builtin:cpu on acme-motors/agent-1")
            await _run_until(scene, 10.0, lambda: len(_headlines(slack)) >= 2)
            for _ in range(3):
                await scene.step(10.0)
        finally:
            await server.stop(5)
        headlines = _headlines(slack)
        assert len(headlines) == 2, headlines
        assert headlines[1].startswith("[RESOLVED]")
        assert "builtin:cpu on acme-motors/agent-1" in headlines[1]

    asyncio.run(scenario())


def test_a_tick_that_queues_a_notice_sends_it_without_waiting_for_the_dispatch_interval(
    store: SQLAlchemyMetricStore, slack: FakeSlack
) -> None:
    """Alert latency is one evaluation interval plus a send, not plus a dispatch interval."""
    clock = FakeClock(NOW)
    add_dealer(store)
    # No group wait (that delay is its own setting); scheduled dispatch only hourly.
    settings = dataclasses.replace(
        FAST,
        dispatch_interval_s=3600.0,
        alert_group_wait_s=0.0,
        slack_webhook_url=slack.webhook_url,
    )

    async def scenario() -> None:
        server = CollectorServer(store, "127.0.0.1:0", settings, clock)
        await server.start()
        scene = Scene(store, server, clock)
        try:
            for _ in range(MAX_STEPS):
                if _headlines(slack):
                    break
                clock.advance(STEP_S)
                scene.write_cpu(95.0)
                target = server.alert_job_stats().ticks + 2
                await _wait_until(
                    lambda t=target: server.alert_job_stats().ticks >= t,  # type: ignore[misc]
                    "two ticks",
                )
            await _wait_until(lambda: len(_headlines(slack)) >= 1, "the firing at Slack")
            # The hourly scheduled dispatch has not come round: the tick's own sent it.
            # (Slack has the message a moment before that run records it and ends.)
            await _wait_until(
                lambda: server.alert_job_stats().dispatches >= 1, "the tick's own dispatch run"
            )
        finally:
            await server.stop(5)
        assert _headlines(slack)[0].startswith("[FIRING] warning: builtin:cpu")

    asyncio.run(scenario())


def test_builtins_are_synced_at_start_with_the_configured_thresholds_and_channels(
    store: SQLAlchemyMetricStore, slack: FakeSlack
) -> None:
    settings = dataclasses.replace(
        FAST, slack_webhook_url=slack.webhook_url, alert_threshold_cpu=65.0
    )

    async def scenario() -> None:
        server = CollectorServer(store, "127.0.0.1:0", settings, FakeClock(NOW))
        await server.start()
        await server.stop(5)

    asyncio.run(scenario())
    with store.engine.connect() as connection:
        rows = {row.name: row for row in connection.execute(select(alert_rules))}
    assert {"builtin:cpu", "builtin:memory", "builtin:agent_down"} <= rows.keys()
    assert rows["builtin:cpu"].warning_threshold == 65.0
    assert rows["builtin:cpu"].channels == ["slack"]


def test_alerting_off_or_in_a_worker_process_schedules_nothing(
    store: SQLAlchemyMetricStore,
) -> None:
    async def scenario(settings: CollectorSettings) -> None:
        server = CollectorServer(store, "127.0.0.1:0", settings, FakeClock(NOW))
        await server.start()
        try:
            with pytest.raises(RuntimeError, match="not running"):
                server.alert_job_stats()
        finally:
            await server.stop(5)

    asyncio.run(scenario(CollectorSettings(alerting=False)))
    asyncio.run(scenario(CollectorSettings(run_jobs=False)))
    with store.engine.connect() as connection:
        assert connection.execute(select(alert_rules)).first() is None


def _settings_from_env(env: dict[str, str]) -> CollectorSettings:
    return CollectorSettings.from_values(resolve(COLLECTOR_OPTIONS, {}, env))


def test_channels_come_from_the_seed_environment_variables() -> None:
    settings = _settings_from_env(
        {
            "SLACK_BOT_TOKEN": "xoxb-very-secret",
            "SLACK_CHANNEL": "#alerts",
            "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": "2525",
            "SMTP_PASSWORD": "hunter2",
            "SMTP_USER": "pulse",
            "SMTP_FROM": "pulse@example.com",
            "SMTP_TO": "ops@example.com, oncall@example.com",
            "SMTP_SECURITY": "none",
            "ALERT_INTERVAL_S": "30",
        }
    )
    assert settings.alert_interval_s == 30.0
    assert settings.smtp_to == ("ops@example.com", "oncall@example.com")
    notifiers = notifiers_from_settings(settings)
    assert sorted(notifiers) == ["email", "slack"]
    shown = repr(settings) + repr(notifiers)
    assert "xoxb-very-secret" not in shown and "hunter2" not in shown


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"SLACK_BOT_TOKEN": "xoxb-1"}, "slack_channel"),
        ({"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_WEBHOOK_URL": "http://127.0.0.1/x"}, "slack_webhook"),
        ({"SMTP_HOST": "127.0.0.1"}, "smtp_from"),
        ({"SMTP_SECURITY": "tls1.0"}, "smtp_security"),
        ({"SMTP_TO": "not-an-address"}, "smtp_to"),
        ({"ALERT_INTERVAL_S": "0"}, "alert_interval_s"),
    ],
)
def test_bad_channel_settings_are_refused_naming_the_key(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        _settings_from_env(env)


def test_channel_secrets_are_marked_secret_so_help_and_errors_hide_them() -> None:
    secret = {o.key for o in COLLECTOR_OPTIONS if o.secret}
    assert {"slack_webhook_url", "slack_bot_token", "smtp_password"} <= secret
