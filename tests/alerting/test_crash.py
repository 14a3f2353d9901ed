"""Crash tests: the collector process killed at each step of a notification, restarted.

A real ``python -m dealerpulse collector`` on a SQLite file, a Slack channel on
a local fake Slack (incoming webhook, or Web API with bot token and channel),
and a CPU rule that fires at the first evaluation. The process dies:

- ``after-commit``: the engine's failpoint ``alert-committed`` (state and outbox
  row committed, nothing sent; the dispatcher is not even scheduled yet);
- ``during-send``: the fake Slack holds the post open and the test SIGKILLs the
  collector while it waits (Slack never got to the message);
- ``after-send``: the dispatcher's failpoint ``notification-sent`` (Slack has the
  message, the outbox does not know).

Restarted without a failpoint, the collector must deliver the firing exactly
once; the one documented exception is ``after-send`` through a webhook, which
cannot be asked: two copies, both with the row's idempotency key. Then the CPU
recovers and exactly one resolved follows.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Any

import pytest
from sqlalchemy import select, update

from collector.alerting.repository import insert_rule, sync_builtin_rules
from collector.alerting.rules import builtin_rules
from collector.settings import CollectorSettings
from collector.store import SQLAlchemyMetricStore, open_store
from collector.store.schema import alert_rules, notification_outbox
from dealerpulse.clock import to_unix_ms

from .factories import add_dealer, batch, sample
from .fake_slack import POST_MESSAGE, WEBHOOK_PATH, FakeSlack, SlackState, _handler

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
CHANNEL = "slack"
FAST_S = "0.2"
# Long enough that no dispatch runs before the engine's failpoint ends the process.
NEVER_S = "3600"
DEADLINE_S = 30.0


# ---- a fake Slack that can hold one post open


@dataclass
class Hold:
    """When armed, the next message post is held open, unanswered and unrecorded."""

    armed: bool = False
    arrived: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self) -> bool:
        with self.lock:
            taken, self.armed = self.armed, False
            return taken


def _holding_handler(state: SlackState, hold: Hold) -> type[BaseHTTPRequestHandler]:
    base = _handler(state)

    class Holding(base):  # type: ignore[misc,valid-type]
        def _answer(self, path: str, body: dict[str, Any]) -> None:
            if path in (WEBHOOK_PATH, POST_MESSAGE) and hold.take():
                hold.arrived.set()
                hold.release.wait(DEADLINE_S)
                # Never answered and never posted: Slack did not get to this message.
                self.close_connection = True
                return
            super()._answer(path, body)

    return Holding


@contextmanager
def holding_slack(hold: Hold) -> Iterator[FakeSlack]:
    state = SlackState()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _holding_handler(state, hold))
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield FakeSlack(state, server.server_address[1])
    finally:
        hold.release.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


# ---- the collector as a process


def wait_for(condition: Callable[[], bool], what: str, timeout_s: float = DEADLINE_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(0.05)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Collector:
    """``python -m dealerpulse collector`` with its output in a log file."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        self._out: IO[bytes] = open(log, "ab")  # noqa: SIM115 - closed in wait()
        self.popen = subprocess.Popen(args, stdout=self._out, stderr=subprocess.STDOUT, env=env)

    def wait(self, timeout_s: float = DEADLINE_S) -> int:
        try:
            return self.popen.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(10)
            raise AssertionError(f"the collector did not exit:\n{self.output()}") from None
        finally:
            self._out.close()

    def kill9(self) -> None:
        self.popen.send_signal(signal.SIGKILL)
        self.wait()

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
        self.wait()

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@dataclass(frozen=True)
class Mode:
    name: str
    path: str
    env: Callable[[FakeSlack], dict[str, str]]


WEBHOOK = Mode("webhook", WEBHOOK_PATH, lambda slack: {"SLACK_WEBHOOK_URL": slack.webhook_url})
WEB_API = Mode(
    "web-api",
    POST_MESSAGE,
    lambda slack: {
        "SLACK_BOT_TOKEN": "xoxb-crash-test",
        "SLACK_CHANNEL": "C0ALERTS",
        "SLACK_API_URL": slack.api_url,
    },
)


class Scene:
    def __init__(self, tmp: Path, db_url: str, slack: FakeSlack, mode: Mode) -> None:
        self.tmp, self.slack, self.mode = tmp, slack, mode
        self.db_url = db_url
        self.store: SQLAlchemyMetricStore = open_store(self.db_url)
        self.seq = 0
        self.runs = 0

    def prepare(self) -> None:
        """A dealer, the built-in CPU rule without its pending time, the built-ins off."""
        add_dealer(self.store)
        now = datetime.now(UTC)
        defaults = CollectorSettings().alert_threshold_values()
        builtins = builtin_rules(defaults, (CHANNEL,))
        cpu = next(rule for rule in builtins if rule.name == "builtin:cpu")
        # for_s=0: a real clock drives this process, and 60 s of pending is too long a test.
        quick = replace(cpu, name="cpu (crash test)", for_s=0, builtin=False)
        with self.store.engine.begin() as connection:
            # Stored disabled first: the collector's sync keeps an operator's "off".
            sync_builtin_rules(connection, builtins, now)
            connection.execute(update(alert_rules).values(enabled=False))
            insert_rule(connection, quick, now)

    def write_cpu(self, *values: float) -> None:
        now_ms = to_unix_ms(datetime.now(UTC))
        points = tuple(
            sample("cpu.percent", value, now_ms - offset) for offset, value in enumerate(values)
        )
        self.seq += 1
        self.store.write_batches([batch(seq=self.seq, samples=points)], datetime.now(UTC))

    def start(self, failpoint: str | None = None, dispatch_s: str = FAST_S) -> Collector:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "SMTP_"))}
        env.pop("DATABASE_URL", None)
        env.pop("DEALERPULSE_FAILPOINT", None)
        env.update(
            PYTHONPATH=str(REPO),
            XDG_DATA_HOME=str(self.tmp / "data"),
            XDG_STATE_HOME=str(self.tmp / "state"),
            # One alert, nothing to group it with: no reason to wait for a burst.
            ALERT_GROUP_WAIT_S="0",
            # The periodic reports are not under test: at start-up they would load
            # the reporter and render a daily and a weekly report, which a stop waits for.
            REPORTS_ENABLED="false",
            **self.mode.env(self.slack),
        )
        if failpoint is not None:
            env["DEALERPULSE_FAILPOINT"] = failpoint
        self.runs += 1
        args = [sys.executable, "-m", "dealerpulse", "collector", "--db", self.db_url]
        args += ["--listen", f"127.0.0.1:{free_port()}", "--alert-interval-s", FAST_S]
        args += ["--dispatch-interval-s", dispatch_s]
        return Collector(args, env, self.tmp / f"collector{self.runs}.log")

    # ---- what happened

    def outbox(self, kind: str) -> list[Any]:
        query = select(notification_outbox).where(notification_outbox.c.kind == kind)
        with self.store.engine.connect() as connection:
            return list(connection.execute(query.order_by(notification_outbox.c.id)))

    def delivered(self, kind: str) -> list[dict[str, Any]]:
        heading = f"[{kind.upper()}]"
        return [
            body
            for body in self.slack.received(self.mode.path)
            if str(body.get("text", "")).startswith(heading)
        ]

    def recorded_sent(self, kind: str) -> bool:
        rows = self.outbox(kind)
        return bool(rows) and all(row.status == "sent" for row in rows)

    def end_lease(self) -> None:
        """The lease a killed dispatcher held runs out (2 min of real time, moved here)."""
        with self.store.engine.begin() as connection:
            connection.execute(
                update(notification_outbox)
                .where(notification_outbox.c.status == "pending")
                .values(next_attempt_at=datetime.now(UTC) - timedelta(seconds=1))
            )


def idempotency_key(body: dict[str, Any]) -> str:
    return str(body["metadata"]["event_payload"]["idempotency_key"])


def crash(scene: Scene, step: str, hold: Hold) -> None:
    """Start the collector so that it dies at ``step`` of sending the firing."""
    if step == "after-commit":
        collector = scene.start("alert-committed", dispatch_s=NEVER_S)
        assert collector.wait() == 137, collector.output()
        assert [row.attempts for row in scene.outbox("firing")] == [0]
        assert scene.slack.received(scene.mode.path) == []
    elif step == "during-send":
        hold.armed = True
        collector = scene.start()
        try:
            wait_for(lambda: hold.arrived.is_set() or collector.popen.poll() is not None, "a send")
            assert hold.arrived.is_set(), collector.output()
        finally:
            collector.kill9()  # while it waits for Slack's answer
        hold.release.set()
        assert scene.slack.received(scene.mode.path) == []
    else:
        collector = scene.start("notification-sent")
        assert collector.wait() == 137, collector.output()
        assert len(scene.delivered("firing")) == 1
    [row] = scene.outbox("firing")
    assert row.status == "pending", "the crash left the firing unrecorded"
    scene.end_lease()


@pytest.mark.parametrize("mode", [WEBHOOK, WEB_API], ids=lambda mode: mode.name)
@pytest.mark.parametrize("step", ["after-commit", "during-send", "after-send"])
def test_a_killed_collector_notifies_each_episode_once_after_restart(
    start_migrated: None, sqlite_url: str, tmp_path: Path, step: str, mode: Mode
) -> None:
    hold = Hold()
    with holding_slack(hold) as slack:
        scene = Scene(tmp_path, sqlite_url, slack, mode)
        try:
            scene.prepare()
            scene.write_cpu(95.0)
            crash(scene, step, hold)
            collector = scene.start()
            try:
                wait_for(lambda: scene.recorded_sent("firing"), "the firing after the restart")
                scene.write_cpu(*[10.0] * 20)
                wait_for(lambda: scene.recorded_sent("resolved"), "the resolved")
            finally:
                collector.stop()
            firing_rows = scene.outbox("firing")
            resolved_rows = scene.outbox("resolved")
        finally:
            scene.store.close()

        [firing_row] = firing_rows
        firings = scene.delivered("firing")
        if step == "after-send" and mode is WEBHOOK:
            # The documented duplicate: a webhook cannot be asked what arrived.
            assert len(firings) == 2, firings
        else:
            assert len(firings) == 1, firings
        assert {idempotency_key(body) for body in firings} == {firing_row.idempotency_key}
        assert "cpu (crash test) on acme-motors/agent-1" in firings[0]["text"]

        [resolved] = scene.delivered("resolved")
        [resolved_row] = resolved_rows
        assert idempotency_key(resolved) == resolved_row.idempotency_key
        if mode is WEB_API:
            # The resolved is a reply to the one firing message, found again if need be.
            assert resolved["thread_ts"] == firing_row.receipt
            assert firing_row.receipt in {message["ts"] for message in slack.state.history}
