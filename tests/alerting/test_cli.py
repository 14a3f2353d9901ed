"""``dealerpulse alerts ...`` in process against a real collector on 127.0.0.1:0."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import pytest

from collector.server import CollectorServer
from collector.settings import CollectorSettings
from collector.store import SQLAlchemyMetricStore
from dealerpulse.cli import main
from dealerpulse.clock import FakeClock
from dealerpulse.tokens import hash_token, new_token

from .factories import NOW
from .test_service import ADMIN_TOKEN, OTHER, _episode

ACME = "acme-motors"


@dataclass(frozen=True)
class Collector:
    address: str
    acme_token: str
    store: SQLAlchemyMetricStore


@pytest.fixture
def collector(store: SQLAlchemyMetricStore, monkeypatch: pytest.MonkeyPatch) -> Iterator[Collector]:
    """A collector serving in a thread of its own (the CLI under test is blocking)."""
    for name in ("DEALERPULSE_COLLECTOR", "DEALERPULSE_TOKEN", "DEALERPULSE_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    acme = new_token(ACME)
    store.create_dealer(ACME, "Acme Motors", hash_token(acme), NOW)
    store.create_dealer(OTHER, "Zenith Cars", hash_token(new_token(OTHER)), NOW)
    store.add_token(None, hash_token(ADMIN_TOKEN), NOW, role="admin")
    port: Future[int] = Future()
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()

    async def serve() -> None:
        server = CollectorServer(store, "127.0.0.1:0", CollectorSettings(), FakeClock(NOW))
        try:
            port.set_result(await server.start())
            await stop.wait()
        except BaseException as error:
            if not port.done():
                port.set_exception(error)
            raise
        finally:
            await server.stop(5)

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    try:
        yield Collector(f"127.0.0.1:{port.result(timeout=30)}", acme, store)
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=30)
        assert not thread.is_alive()
        loop.close()


def run(
    capsys: pytest.CaptureFixture[str], collector: Collector, token: str, *argv: str
) -> tuple[int, str, str]:
    code = main(["alerts", argv[0], "--collector", collector.address, "--token", token, *argv[1:]])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def as_json(
    capsys: pytest.CaptureFixture[str], collector: Collector, token: str, *argv: str
) -> Any:
    code, out, err = run(capsys, collector, token, *argv, "--json")
    assert code == 0, err
    return json.loads(out)


def test_rules_are_created_shown_updated_and_deleted(
    collector: Collector, capsys: pytest.CaptureFixture[str]
) -> None:
    created = as_json(
        capsys, collector, collector.acme_token,
        "rule-create", "cpu hot", "--metric", "cpu.percent", "--aggregation", "max",
        "--window", "2m", "--comparator", ">", "--warning", "80", "--critical", "95",
        "--warning-recovery", "70", "--for", "30s", "--dealer", ACME,
        "--label", "mount=/", "--channel", "slack", "--channel", "email",
    )  # fmt: skip
    assert created["id"] > 0 and created["window_s"] == 120 and created["for_s"] == 30
    assert created["thresholds"] == {"warning": 80, "critical": 95, "warning_recovery": 70}
    assert created["label_matchers"] == {"mount": "/"}
    assert created["channels"] == ["slack", "email"] and created["enabled"] is True

    rule_id = str(created["id"])
    updated = as_json(
        capsys, collector, collector.acme_token,
        "rule-update", rule_id, "--disable", "--critical", "99", "--channel", "email",
    )  # fmt: skip
    assert updated["enabled"] is False and updated["channels"] == ["email"]
    assert updated["thresholds"] == {"warning": 80, "critical": 99, "warning_recovery": 70}
    fetched = as_json(capsys, collector, collector.acme_token, "rule-get", rule_id)
    assert fetched == updated

    code, table, _ = run(capsys, collector, ADMIN_TOKEN, "rules")
    assert code == 0 and table.splitlines()[0].split()[:3] == ["ID", "NAME", "DEALER"]
    assert "cpu hot" in table and "builtin:cpu" in table and "critical=99" in table
    mine = as_json(capsys, collector, collector.acme_token, "rules")
    assert [rule["name"] for rule in mine] == ["cpu hot"]

    code, out, _ = run(capsys, collector, collector.acme_token, "rule-delete", rule_id)
    assert code == 0 and f"rule {rule_id} deleted" in out
    code, out, err = run(capsys, collector, collector.acme_token, "rule-get", rule_id)
    assert code == 1 and out == "" and f"NOT_FOUND: no alert rule with id {rule_id}" in err


def test_a_refused_call_prints_its_status_and_exits_1(
    collector: Collector, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(
        capsys, collector, collector.acme_token,
        "rule-create", "fleet", "--metric", "cpu.percent", "--warning", "80",
    )  # fmt: skip
    assert code == 1 and "PERMISSION_DENIED" in err and "admin" in err
    code, _, err = run(
        capsys, collector, collector.acme_token,
        "rule-create", "odd", "--metric", "cpu.percent", "--warning", "1",
        "--aggregation", "median", "--dealer", ACME,
    )  # fmt: skip
    assert code == 1 and "INVALID_ARGUMENT" in err and "aggregation" in err
    code, _, err = run(capsys, collector, "dp1.acme-motors.wrong", "rules")
    assert code == 1 and "UNAUTHENTICATED" in err


def test_alerts_are_listed_acknowledged_and_resolved(
    collector: Collector, capsys: pytest.CaptureFixture[str]
) -> None:
    warning = _episode(collector.store, ACME, "warning", 30)
    critical = _episode(collector.store, ACME, "critical", 5)
    theirs = _episode(collector.store, OTHER, "critical", 5)
    listed = as_json(capsys, collector, collector.acme_token, "list")
    assert [alert["id"] for alert in listed] == [critical, warning]
    assert listed[0]["labels"] == {"mount": "/"} and listed[0]["value"] == 91.0
    only = as_json(capsys, collector, ADMIN_TOKEN, "list", "--severity", "critical")
    assert {alert["id"] for alert in only} == {critical, theirs}
    since = as_json(capsys, collector, ADMIN_TOKEN, "list", "--since", "2026-03-01T11:50:00Z")
    assert {alert["id"] for alert in since} == {critical, theirs}
    code, _, err = run(capsys, collector, collector.acme_token, "list", "--dealer", OTHER)
    assert code == 1 and "PERMISSION_DENIED" in err

    acked = as_json(capsys, collector, collector.acme_token, "ack", str(critical), "--by", "ana")
    assert acked["acknowledged_by"] == "ana" and acked["acknowledged"] == NOW.isoformat()
    code, out, _ = run(capsys, collector, collector.acme_token, "resolve", str(critical))
    assert code == 0 and "resolved" in out
    code, out, _ = run(capsys, collector, collector.acme_token, "list", "--state", "firing")
    rows = out.splitlines()[2:]
    assert code == 0 and [row.split()[0] for row in rows] == [str(warning)]
    code, _, err = run(capsys, collector, collector.acme_token, "ack", str(theirs))
    assert code == 1 and "NOT_FOUND" in err


def test_silences_are_added_listed_and_deleted(
    collector: Collector, capsys: pytest.CaptureFixture[str]
) -> None:
    created = as_json(
        capsys, collector, collector.acme_token,
        "silence-add", "--dealer", ACME, "--label", "mount=/", "--start",
        "2026-03-01T12:00:00Z", "--duration", "2h", "--comment", "maintenance",
    )  # fmt: skip
    assert created["starts"] == "2026-03-01T12:00:00+00:00"
    assert created["ends"] == "2026-03-01T14:00:00+00:00"
    assert created["created_by"] == ACME and created["label_matchers"] == {"mount": "/"}
    code, _, err = run(
        capsys, collector, collector.acme_token, "silence-add", "--duration", "1h"
    )  # no dealer: every dealer's, which needs an admin
    assert code == 1 and "PERMISSION_DENIED" in err

    code, table, _ = run(capsys, collector, collector.acme_token, "silences")
    assert code == 0 and "maintenance" in table and "mount=/" in table
    code, out, _ = run(
        capsys, collector, collector.acme_token, "silence-delete", str(created["id"])
    )
    assert code == 0 and "deleted" in out
    assert as_json(capsys, collector, collector.acme_token, "silences", "--all") == []


def test_collector_and_token_come_from_the_environment_and_the_config_file(
    collector: Collector,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Any,
) -> None:
    config = tmp_path / "dealerpulse.toml"
    config.write_text(f'[alerts]\ncollector = "{collector.address}"\n')
    monkeypatch.setenv("DEALERPULSE_TOKEN", ADMIN_TOKEN)
    assert main(["--config", str(config), "alerts", "rules", "--json"]) == 0
    assert "builtin:cpu" in capsys.readouterr().out

    monkeypatch.delenv("DEALERPULSE_TOKEN")
    with pytest.raises(SystemExit) as exited:
        main(["--config", str(config), "alerts", "rules"])
    assert exited.value.code == 2 and "token" in capsys.readouterr().err
