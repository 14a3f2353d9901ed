"""``dealerpulse agent --check`` names the intake's state and each probe's first result."""

from __future__ import annotations

import asyncio
import shutil
import socket
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from agent.aggregate import RequestRecord
from agent.check import CheckReport, check
from agent.instrument.wire import IntakeAddress
from agent.intake import IntakeServer
from agent.probes import ProbeSpec
from agent.settings import AgentConfig

TOKEN = "dp1.acme.s3cr3t-s3cr3t-s3cr3t-s3cr3t"


@pytest.fixture
def short_dir() -> Iterator[Path]:
    directory = Path(tempfile.mkdtemp(prefix="dp-chk-", dir="/tmp"))  # a unix socket fits
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def run_check(directory: Path, intake: IntakeAddress | None, *probes: ProbeSpec) -> CheckReport:
    config = AgentConfig(
        collector=f"127.0.0.1:{closed_port()}",  # nobody there: only the local checks matter
        token=TOKEN,
        spool_path=directory / "spool.db",
        intake=intake,
        probes=probes,
    )
    return asyncio.run(asyncio.wait_for(check(config), 30))


class Discard:
    def record(self, record: RequestRecord) -> None:
        pass


def test_a_free_intake_address_is_reported_and_left_free(short_dir: Path) -> None:
    path = short_dir / "intake.sock"
    report = run_check(short_dir, IntakeAddress(path=str(path)))
    assert report.intake.startswith(f"{path} (can listen")
    assert f"intake: {report.intake}" in report.lines()
    assert not any("intake" in p for p in report.problems + report.warnings)
    assert not path.exists()  # the check's own socket is gone


def test_an_intake_held_by_a_running_agent_is_only_a_warning(short_dir: Path) -> None:
    path = short_dir / "intake.sock"
    with IntakeServer(Discard(), path):
        report = run_check(short_dir, IntakeAddress(path=str(path)))
        assert path.exists()  # not stolen from the running agent
    assert "another" in report.intake
    assert any("another agent listens" in w for w in report.warnings)
    assert not any("intake" in p for p in report.problems)


def test_an_intake_that_cannot_listen_is_a_problem(short_dir: Path) -> None:
    (short_dir / "file").write_text("not a directory")
    path = short_dir / "file" / "intake.sock"
    report = run_check(short_dir, IntakeAddress(path=str(path)))
    [problem] = [p for p in report.problems if p.startswith("intake:")]
    assert str(path) in problem


def test_intake_off_is_said_plainly(short_dir: Path) -> None:
    assert run_check(short_dir, None).intake.startswith("off")


class Handler(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        body = b"all good"
        self.send_response(self.status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class Down(Handler):
    status = 503


@contextmanager
def http_server(handler: type[BaseHTTPRequestHandler] = Handler) -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def test_each_probe_reports_its_first_result(short_dir: Path) -> None:
    with http_server() as up, http_server(Down) as down:
        report = run_check(
            short_dir,
            None,
            ProbeSpec(url=f"http://127.0.0.1:{up}/health", name="dms", body_contains="good"),
            ProbeSpec(url=f"http://127.0.0.1:{down}/health", name="crm"),
            ProbeSpec(url=f"http://127.0.0.1:{closed_port()}/", name="gone", timeout_s=2),
        )
    dms, crm, gone = report.probes
    assert dms.startswith("dms: OK, GET answered 200 in ")
    assert crm.startswith("crm: FAILED") and "expected status 200, got 503" in crm
    assert gone.startswith("gone: FAILED") and "no answer" in gone
    assert [w.split()[1] for w in report.warnings if w.startswith("probe ")] == ["crm", "gone"]
    assert f"probe {dms}" in report.lines()
    assert not any("probe" in p for p in report.problems)  # a down target is not a setup error
