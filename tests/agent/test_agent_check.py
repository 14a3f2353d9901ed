"""``dealerpulse agent --check``: precise answers, and it never streams."""

from __future__ import annotations

from pathlib import Path

import grpc
from agent_testkit import DEALER, TOKEN, Changes, ScriptedCollector, run, serving

from agent.check import CheckReport, check
from agent.settings import AgentConfig
from agent.spool import SqliteSpool


def config(tmp_path: Path, address: str, token: str = TOKEN) -> AgentConfig:
    return AgentConfig(collector=address, token=token, spool_path=tmp_path / "spool" / "s.db")


async def check_against(collector: ScriptedCollector, cfg_path: Path) -> CheckReport:
    async with serving(collector) as address:
        return await check(config(cfg_path, address))


def test_healthy_setup_reports_dealer_and_clock_offset(tmp_path: Path) -> None:
    collector = ScriptedCollector(Changes())
    report = run(check_against(collector, tmp_path))
    assert report.ok, report.problems
    assert report.dealer_id == DEALER and report.dealer_name == "Acme Motors"
    assert report.clock_offset_ms is not None and abs(report.clock_offset_ms) < 2_000
    assert report.last_committed_seq == 0
    assert collector.stream_starts == []  # a check never streams
    # The Hello registered the id the agent will use: the spool's.
    hello, _ = collector.hellos[0]
    with SqliteSpool(tmp_path / "spool" / "s.db", dealer_id=DEALER) as spool:
        assert hello.agent_id == spool.agent_id == report.agent_id
    assert report.lines()[-1] == "OK"


def test_malformed_token_is_named_and_nothing_is_sent(tmp_path: Path) -> None:
    collector = ScriptedCollector(Changes())

    async def body() -> CheckReport:
        async with serving(collector) as address:
            return await check(config(tmp_path, address, token="not-a-token"))

    report = run(body())
    assert not report.ok
    assert any(p.startswith("token:") for p in report.problems)
    assert collector.hellos == []


def test_refused_token_is_explained(tmp_path: Path) -> None:
    collector = ScriptedCollector(Changes())
    collector.refuse_code = grpc.StatusCode.UNAUTHENTICATED
    report = run(check_against(collector, tmp_path))
    [problem] = report.problems
    assert "does not accept this token" in problem and DEALER in problem
    assert "s3cr3t" not in " ".join(report.lines())


def test_unreachable_collector_is_explained(tmp_path: Path) -> None:
    report = run(check(config(tmp_path, "127.0.0.1:1")))
    [problem] = report.problems
    assert "127.0.0.1:1" in problem and "cannot connect" in problem


def test_dealer_mismatch_is_a_problem(tmp_path: Path) -> None:
    collector = ScriptedCollector(Changes())
    collector.dealer_id = "other-dealer"
    report = run(check_against(collector, tmp_path))
    assert any("other-dealer" in p for p in report.problems)


def test_unwritable_spool_location_is_named(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    cfg = AgentConfig(collector="127.0.0.1:1", token=TOKEN, spool_path=blocker / "sub" / "spool.db")
    report = run(check(cfg))
    assert any(p.startswith("spool:") and str(blocker) in p for p in report.problems)


def test_spool_held_by_a_running_agent_is_only_a_warning(tmp_path: Path) -> None:
    collector = ScriptedCollector(Changes())
    with SqliteSpool(tmp_path / "spool" / "s.db", dealer_id=DEALER):
        report = run(check_against(collector, tmp_path))
    assert report.ok, report.problems
    assert any("in use by a running agent" in w for w in report.warnings)
