"""Three collectors on one PostgreSQL, one killed mid-run (issue 8).

Thirty swarm agents reach the collectors through a relay that spreads their
connections over the three (tests/e2e/spreading_relay.py); the swarm cuts a
random agent's connection every second on average, so agents reconnect and
resend all along. One more agent, a real ``dealerpulse agent`` of a second
dealer, runs "hot": the one alert rule fires for it. Alerting runs in every
collector with a 1 s evaluation interval and a webhook to a local fake Slack.

After the firing is delivered, one collector is killed with SIGKILL; the run
goes on with two. Then:

- everything acked is stored, exactly once;
- every evaluation slot of the run was claimed by exactly one collector, and
  the slots are contiguous, also after the kill (the killed collector's slot,
  if it died holding one, is taken over by a survivor);
- Slack got exactly one firing notification.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from alerting.fake_slack import WEBHOOK_PATH, FakeSlack, fake_slack
from e2e_procs import (
    REPO,
    Proc,
    env_for,
    free_port,
    reap_all,
    start_agent,
    start_collector,
    wait_for,
)
from spreading_relay import SpreadingRelay
from sqlalchemy import select, update

from collector.admin import add_dealer
from collector.alerting.repository import insert_rule, sync_builtin_rules
from collector.alerting.rules import (
    Aggregation,
    Comparator,
    Condition,
    Rule,
    Thresholds,
    builtin_rules,
)
from collector.settings import CollectorSettings
from collector.store import SQLAlchemyMetricStore, open_store
from collector.store.schema import alert_rules, alert_ticks, notification_outbox
from dealerpulse.clock import to_unix_ms

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

AGENTS = 30
INTERVAL_MS = 1000
RULE_NAME = "cpu (scale-out test)"


@pytest.fixture(autouse=True)
def _no_process_outlives_its_test() -> Iterator[None]:
    yield
    reap_all()


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with fake_slack() as server:
        yield server


@pytest.fixture
def alerting_env(monkeypatch: pytest.MonkeyPatch, slack: FakeSlack) -> None:
    """What every collector process gets (env_for copies os.environ)."""
    monkeypatch.setenv("ALERT_INTERVAL_S", str(INTERVAL_MS / 1000))
    monkeypatch.setenv("DEALERPULSE_DISPATCH_INTERVAL_S", "0.5")
    # One alert, nothing to group it with.
    monkeypatch.setenv("ALERT_GROUP_WAIT_S", "0")
    monkeypatch.setenv("SLACK_WEBHOOK_URL", slack.webhook_url)
    for name in ("SLACK_BOT_TOKEN", "SLACK_CHANNEL", "SMTP_HOST", "DEALERPULSE_FAILPOINT"):
        monkeypatch.delenv(name, raising=False)


def prepare_rules(store: SQLAlchemyMetricStore, hot_dealer: str) -> None:
    """Built-ins stored disabled (the collectors' sync keeps that); one rule that always fires."""
    now = datetime.now(UTC)
    builtins = builtin_rules(CollectorSettings().alert_threshold_values(), ("slack",))
    hot = Rule(
        name=RULE_NAME,
        # Any CPU reading is at or above 0 %: fires at the first evaluation with data.
        condition=Condition(
            "cpu.percent", Aggregation.MAX, 60, Comparator.GE, Thresholds(warning=0.0)
        ),
        dealer_id=hot_dealer,
        channels=("slack",),
        alert_type="cpu",
    )
    with store.engine.begin() as connection:
        sync_builtin_rules(connection, builtins, now)
        connection.execute(update(alert_rules).values(enabled=False))
        insert_rule(connection, hot, now)


def committed_total(store: SQLAlchemyMetricStore, agent_ids: list[str]) -> int:
    return sum(len(store.committed_batches(a)) for a in agent_ids)


def ticks(store: SQLAlchemyMetricStore) -> list[Any]:
    with store.engine.connect() as connection:
        return list(connection.execute(select(alert_ticks).order_by(alert_ticks.c.slot_ms)))


def firing_sent(store: SQLAlchemyMetricStore) -> bool:
    query = select(notification_outbox.c.status).where(notification_outbox.c.kind == "firing")
    with store.engine.connect() as connection:
        return list(connection.scalars(query)) == ["sent"]


def firings(slack: FakeSlack) -> list[str]:
    texts = [str(body.get("text", "")) for body in slack.received(WEBHOOK_PATH)]
    return [text for text in texts if text.startswith("[FIRING]")]


def start_swarm(tmp: Path, port: int, token: str, out: Path) -> Proc:
    (tmp / "spools").mkdir()
    args = [sys.executable, str(REPO / "tests" / "e2e" / "swarm.py")]
    args += ["--collector", f"127.0.0.1:{port}", "--token", token, "--agents", str(AGENTS)]
    args += ["--dir", str(tmp / "spools"), "--interval", "0.5", "--samples", "20"]
    args += ["--out", str(out), "--disconnect-every", "1.0", "--connection-per-agent"]
    return Proc(args, tmp / "swarm.log", env_for(tmp))


def check_stored_exactly_once(
    store: SQLAlchemyMetricStore, result: dict[str, Any], agent_ids: list[str]
) -> None:
    assert sorted(result) == agent_ids
    for agent_id, seen in result.items():
        committed = store.committed_batches(agent_id)
        assert seen["acked"], f"{agent_id} got no ack at all"
        # Every batch the agent saw acked is stored...
        assert set(seen["acked"]) <= set(committed), agent_id
        # ...exactly once: the rows are what the batch records say was stored.
        assert store.count_samples(agent_id) == sum(committed.values()), agent_id
        everything = set(committed) | set(seen["pending_seqs"])
        assert everything == set(range(1, max(everything) + 1)), f"{agent_id}: a seq is missing"


def check_one_evaluation_per_slot(rows: list[Any], killed_at_ms: int, killed_pid: int) -> None:
    slots = [row.slot_ms for row in rows]
    assert slots, "no evaluation slot was claimed"
    assert all(slot % INTERVAL_MS == 0 for slot in slots), slots
    # Every slot of the run, in order, one row each (the primary key makes it one).
    expected = set(range(slots[0], slots[-1] + INTERVAL_MS, INTERVAL_MS))
    missing = expected - set(slots)
    # A slot may go unclaimed only if the kill landed in it.
    kill_slot = killed_at_ms - killed_at_ms % INTERVAL_MS
    assert missing <= {kill_slot}, (sorted(missing), kill_slot)
    # Every slot evaluated the one enabled rule, and committed with it.
    assert {(row.rules, row.finished_at is not None) for row in rows} == {(1, True)}
    after_kill = [row for row in rows if row.slot_ms > kill_slot + INTERVAL_MS]
    assert len(after_kill) >= 3, "too few slots after the kill to judge the take-over"
    # claimed_by is "host:pid": the dead collector claims nothing more.
    assert not [row for row in after_kill if row.claimed_by.endswith(f":{killed_pid}")]
    # ...and before it died, it did its share.
    assert [row for row in rows if row.claimed_by.endswith(f":{killed_pid}")]


def test_three_collectors_share_ingest_and_alerting_and_survive_a_kill9(
    pg_url: str, tmp_path: Path, slack: FakeSlack, alerting_env: None
) -> None:
    store = open_store(pg_url)
    _, swarm_token = add_dealer(store, "Harbor Autos")
    hot_dealer, hot_token = add_dealer(store, "Hot Rod Motors")
    prepare_rules(store, hot_dealer.dealer_id)
    ports = [free_port() for _ in range(3)]
    collectors = [
        start_collector(pg_url, port, tmp_path, name=f"collector{i}")
        for i, port in enumerate(ports)
    ]
    relay = SpreadingRelay(ports)
    relay_port = relay.start()
    agent_ids = [f"swarm-{i:03d}" for i in range(AGENTS)]
    result_path = tmp_path / "swarm.json"
    swarm = start_swarm(tmp_path, relay_port, swarm_token, result_path)
    hot = start_agent(relay_port, hot_token, tmp_path / "hot.db", tmp_path, 1.0, "hot-agent")
    victim = collectors[0]
    try:
        wait_for(lambda: firing_sent(store), "the firing to be sent", timeout_s=45)
        wait_for(lambda: committed_total(store, agent_ids) >= 150, "traffic before the kill")
        assert len(relay.opened) == 3, relay.opened  # the agents use every collector
        killed_at_ms = to_unix_ms(datetime.now(UTC))
        victim.kill9()
        before = committed_total(store, agent_ids)
        slots_before = len(ticks(store))
        wait_for(
            lambda: (
                committed_total(store, agent_ids) >= before + 300
                and len(ticks(store)) >= slots_before + 5
            ),
            "traffic and evaluations after the kill",
            timeout_s=45,
        )
    finally:
        assert swarm.terminate(timeout_s=60) == 0, swarm.output()
        hot.terminate()
        for collector in collectors[1:]:
            assert collector.terminate() == 0, collector.output()
        relay.close()

    try:
        check_stored_exactly_once(store, json.loads(result_path.read_text()), agent_ids)
        check_one_evaluation_per_slot(ticks(store), killed_at_ms, victim.popen.pid)
        # The firing went out once, from whichever collector claimed it.
        [firing] = firings(slack)
        assert f"{RULE_NAME} on {hot_dealer.dealer_id}/" in firing, firing
        assert firing_sent(store)
    finally:
        store.close()
