"""The app-side sink: never blocks, never raises, counts what it loses."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agent.aggregate import RequestRecord
from agent.instrument.sink import DisabledSink, RecordSink, default_sink
from agent.intake import IntakeServer

from .conftest import Intake, wait_until


def record(n: int = 0) -> RequestRecord:
    return RequestRecord(f"/api/r{n % 3}", "GET", 200, float(n), 1_000 + n)


def test_a_full_queue_drops_and_counts_then_sends_the_rest_on_close(intake: Intake) -> None:
    # A sender that waits a minute before its first batch: nothing drains meanwhile.
    sink = intake.sink(max_queue=10, flush_interval_s=60.0)
    results = [sink.offer(record(n)) for n in range(100)]

    assert results.count(True) == 10
    stats = sink.stats()
    assert (stats.accepted, stats.dropped_queue_full, stats.queued) == (10, 90, 10)
    sink.close(timeout_s=10)  # cuts the minute short and sends what is queued
    intake.wait_for_records(10)
    assert sink.stats().sent == 10
    assert not sink.offer(record())  # closed: refused, not queued


def test_an_absent_agent_costs_the_app_nothing_and_is_counted(socket_dir: Path) -> None:
    sink = RecordSink(socket_dir / "nobody-listens.sock")
    assert all(sink.offer(record(n)) for n in range(50))
    assert sink.flush(timeout_s=10)
    stats = sink.stats()
    assert (stats.accepted, stats.sent, stats.send_failed) == (50, 0, 50)
    sink.close()


def test_the_sink_finds_an_agent_that_starts_later_or_restarts(intake: Intake) -> None:
    sink = intake.sink()
    sink.offer(record(1))
    assert sink.flush()
    intake.server.stop()  # reads what was queued for it before it closes
    assert intake.aggregator.records == 1
    sink.offer(record(2))  # agent down: lost, counted
    assert sink.flush()
    restarted = IntakeServer(intake.aggregator, intake.path)
    restarted.start()
    try:
        sink.offer(record(3))
        assert sink.flush()
        wait_until(lambda: intake.aggregator.records == 2, what="records before and after")
        assert (sink.stats().sent, sink.stats().send_failed) == (2, 1)
    finally:
        sink.close()
        restarted.stop()


def test_a_forked_child_gets_its_own_sender(intake: Intake) -> None:
    sink = intake.sink()
    sink.offer(record(1))  # the parent's sender thread is running when we fork
    assert sink.flush()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through its exit code
        ok = sink.offer(record(2)) and sink.flush(timeout_s=10)
        os._exit(0 if ok and sink.stats().sent == 1 else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    intake.wait_for_records(2)
    sink.close()


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="max_queue"):
        RecordSink("/tmp/x.sock", max_queue=0)


def test_a_misconfigured_default_address_turns_metrics_off_instead_of_failing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import agent.instrument.sink as sink_module

    monkeypatch.setattr(sink_module, "_default", None)
    monkeypatch.setenv("DEALERPULSE_INTAKE", "udp://10.1.2.3:9")
    sink = default_sink()
    assert isinstance(sink, DisabledSink)
    assert not sink.offer(record())


def test_the_default_sink_follows_the_environment(
    monkeypatch: pytest.MonkeyPatch, socket_dir: Path
) -> None:
    import agent.instrument.sink as sink_module

    monkeypatch.setattr(sink_module, "_default", None)
    monkeypatch.setenv("DEALERPULSE_INTAKE", str(socket_dir / "i.sock"))
    sink = default_sink()
    assert isinstance(sink, RecordSink)
    assert sink.address.path == str(socket_dir / "i.sock")
    assert default_sink() is sink
    sink.close()
