"""Secrets never reach logs: channel credentials and tokens, through ingest and an alert.

Two runs, because Slack takes a webhook or a bot token, not both: the collector
in this process with the bot token and an SMTP password (every log record at
DEBUG captured), and a real `dealerpulse collector` process with the webhook
and an SMTP password (its whole stderr at DEBUG captured).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from collector.settings import CollectorSettings
from collector.store import SQLAlchemyMetricStore, open_store
from dealerpulse.clock import FakeClock, SystemClock, to_unix_ms
from dealerpulse.tokens import new_token
from dealerpulse.v1 import alerts_pb2 as pb
from dealerpulse.v1 import alerts_pb2_grpc

from .kit import add_admin, add_dealer, run, running_collector, sample, wait_until, within

REPO = Path(__file__).resolve().parents[2]
A = "acme-motors"
SMTP_PASSWORD = "smtp-pw-Zq8rT2vL"
BOT_TOKEN = "xoxb-1111-2222-BotSecretK9"
# The webhook's path is its secret; the fake Slack answers on this path.
WEBHOOK_SECRET = "/services/T000/B000/secret"


class Mailbox:
    """An SMTP server's handler that takes any login and keeps the messages."""

    def __init__(self) -> None:
        self.messages: list[bytes] = []
        self.logins: list[tuple[bytes, bytes]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(envelope.content)
        return "250 OK"

    def authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any
    ) -> AuthResult:
        self.logins.append((data.login, data.password))
        return AuthResult(success=True)


@contextmanager
def smtp_server() -> Iterator[tuple[Mailbox, int]]:
    mailbox = Mailbox()
    port = _free_port()
    controller = Controller(
        mailbox,
        hostname="127.0.0.1",
        port=port,
        authenticator=mailbox.authenticate,
        auth_require_tls=False,
        ready_timeout=10,
    )
    controller.start()
    try:
        yield mailbox, port
    finally:
        controller.stop()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _smtp_settings(port: int) -> dict[str, Any]:
    return {
        "smtp_host": "127.0.0.1",
        "smtp_port": port,
        "smtp_user": "alerts",
        "smtp_password": SMTP_PASSWORD,
        "smtp_security": "none",
        "smtp_from": "dp@example.com",
        "smtp_to": ("ops@example.com",),
    }


def _hot_rule() -> pb.AlertRule:
    return pb.AlertRule(
        name="cpu very hot",
        metric="cpu.percent",
        aggregation="max",
        window_s=60,
        comparator=">",
        thresholds=pb.Thresholds(critical=90),
        dealer_id=A,
        channels=["slack", "email"],
        enabled=True,
    )


def _leaks(text: str, secrets: dict[str, str]) -> list[str]:
    return [name for name, secret in secrets.items() if secret in text]


def test_no_secret_in_any_log_record_of_a_collector_that_ingests_and_alerts(
    sqlite_store: SQLAlchemyMetricStore,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from alerting.fake_slack import POST_MESSAGE, fake_slack

    caplog.set_level(logging.DEBUG)
    tokens = add_dealer(sqlite_store, clock, A)
    admin = add_admin(sqlite_store, clock)
    wrong = new_token(A)  # presented, refused, and must not be logged either
    with fake_slack() as slack, smtp_server() as (mailbox, smtp_port):
        settings = CollectorSettings(
            listen="127.0.0.1:0",
            alert_interval_s=0.05,
            dispatch_interval_s=0.05,
            alert_group_wait_s=0.0,
            slack_bot_token=BOT_TOKEN,
            slack_channel="#alerts",
            slack_api_url=slack.api_url,
            **_smtp_settings(smtp_port),
        )

        async def scenario() -> None:
            async with running_collector(sqlite_store, settings, clock) as collector:
                await _create_rule(collector.address, admin)
                for token in (wrong, tokens.viewer):
                    async with collector.agent(token, A) as intruder:
                        with pytest.raises(grpc.aio.AioRpcError):
                            await intruder.hello()
                async with collector.agent(tokens.dealer, A) as agent:
                    await agent.hello()
                    now_ms = to_unix_ms(clock.now())
                    ack = await agent.stream().roundtrip(
                        agent.batch(1, (sample(now_ms, value=99.0),))
                    )
                    assert ack.status.name == "STORED"
                clock.advance(1)
                await wait_until(
                    lambda: bool(slack.received(POST_MESSAGE)) and bool(mailbox.messages),
                    "the alert on Slack and by email",
                )

        run(scenario())
    assert mailbox.logins == [(b"alerts", SMTP_PASSWORD.encode())]  # the secret was used
    secrets = {
        "SMTP password": SMTP_PASSWORD,
        "Slack bot token": BOT_TOKEN,
        "dealer token": tokens.dealer,
        "dealer token secret": tokens.dealer.rsplit(".", 1)[1],
        "viewer token": tokens.viewer,
        "refused token": wrong,
        "admin token": admin,
    }
    ours = [r for r in caplog.records if not r.name.startswith("mail.log")]  # not aiosmtpd's
    text = "\n".join(f"{r.name} {r.getMessage()} {r.exc_text or ''}" for r in ours)
    assert len(ours) > 10, "too few log records: is DEBUG capture working?"
    assert not _leaks(text, secrets), _leaks(text, secrets)


async def _create_rule(address: str, admin: str) -> None:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = alerts_pb2_grpc.AlertsStub(channel)  # type: ignore[no-untyped-call]
        metadata = (("authorization", f"Bearer {admin}"),)
        await within(stub.CreateRule(pb.CreateRuleRequest(rule=_hot_rule()), metadata=metadata))


def test_no_secret_on_the_stderr_of_a_collector_process(
    start_migrated: None, sqlite_url: str, tmp_path: Path
) -> None:
    from alerting.fake_slack import WEBHOOK_PATH, fake_slack

    assert WEBHOOK_PATH == WEBHOOK_SECRET
    db = sqlite_url
    real_clock = FakeClock()  # only for token creation times
    store = open_store(db, clock=SystemClock())
    try:
        tokens = add_dealer(store, real_clock, A)
        admin = add_admin(store, real_clock)
    finally:
        store.close()
    port = _free_port()
    with fake_slack() as slack, smtp_server() as (mailbox, smtp_port):
        env = {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "SLACK_WEBHOOK_URL": slack.webhook_url,
            "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": str(smtp_port),
            "SMTP_USER": "alerts",
            "SMTP_PASSWORD": SMTP_PASSWORD,
            "SMTP_SECURITY": "none",
            "SMTP_FROM": "dp@example.com",
            "SMTP_TO": "ops@example.com",
            "ALERT_INTERVAL_S": "0.2",
            "DEALERPULSE_DISPATCH_INTERVAL_S": "0.2",
            "ALERT_GROUP_WAIT_S": "0",
        }
        env.pop("DATABASE_URL", None)
        args = [sys.executable, "-m", "dealerpulse", "--log-level", "DEBUG", "collector"]
        args += ["--listen", f"127.0.0.1:{port}", "--db", db]
        log = tmp_path / "collector.log"
        with open(log, "wb") as out:
            process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env)
            try:
                _drive(port, tokens, admin, lambda: bool(slack.received(WEBHOOK_PATH)))
                _wait(lambda: bool(mailbox.messages), "the alert email")
            finally:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(10)
    stderr = log.read_text(errors="replace")
    assert "collector ingest listening" in stderr and "DEBUG" in stderr, stderr[-2000:]
    secrets = {
        "SMTP password": SMTP_PASSWORD,
        "Slack webhook": WEBHOOK_SECRET,
        "dealer token": tokens.dealer,
        "viewer token": tokens.viewer,
        "admin token": admin,
    }
    assert not _leaks(stderr, secrets), _leaks(stderr, secrets)


def _wait(condition: Callable[[], bool], what: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.05)


def _drive(port: int, tokens: Any, admin: str, alerted: Callable[[], bool]) -> None:
    """Create a rule, send a hot CPU sample as the dealer's agent, wait for the alert."""
    from agent.codec import Hello, encode_batch
    from agent.connection import Endpoint, open_channel, open_stream, say_hello

    from .kit import batch, new_agent_id

    async def scenario() -> None:
        address = f"127.0.0.1:{port}"
        async with grpc.aio.insecure_channel(address) as channel:
            await within(channel.channel_ready(), 30)
        await _create_rule(address, admin)
        channel = open_channel(Endpoint(address, tokens.dealer))
        try:
            agent_id = new_agent_id()
            await say_hello(channel, tokens.dealer, Hello(agent_id, "dms", "0.1", "b"), 10)
            stream = open_stream(channel, tokens.dealer)
            now_ms = to_unix_ms(SystemClock().now() - timedelta(seconds=1))
            hot = batch(A, agent_id, 1, now_ms, (sample(now_ms, value=99.0),))
            await within(stream.write(encode_batch(hot)))
            await within(stream.read())
            await within(asyncio.to_thread(_wait, alerted, "the alert on Slack"), 40)
        finally:
            await channel.close(None)

    run(scenario(), timeout_s=90)
