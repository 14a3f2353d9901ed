"""The agent command runs without the standard library's ssl, and mutual TLS still works.

``dealerpulse agent`` imports grpc while ``ssl`` is unavailable (agent.footprint):
grpc has its own TLS, and libssl/libcrypto would cost the agent megabytes of
its memory budget. These tests run the real commands as processes, over mTLS.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_procs import DEALERPULSE, Proc, env_for, free_port, reap_all, wait_for

from collector.admin import add_dealer
from collector.store import open_store
from dealerpulse.certs import CertFiles, make_certs

pytestmark = pytest.mark.slow

CLIENT = "sunrise-agent"


@pytest.fixture(autouse=True)
def _no_process_outlives_its_test() -> Iterator[None]:
    yield
    reap_all()


def accepting(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def start_mtls_collector(db_url: str, port: int, certs: CertFiles, tmp: Path) -> Proc:
    proc = Proc(
        [
            *DEALERPULSE,
            "collector",
            "--listen",
            f"127.0.0.1:{port}",
            "--db",
            db_url,
            "--tls-cert",
            str(certs.server_cert),
            "--tls-key",
            str(certs.server_key),
            "--tls-client-ca",
            str(certs.ca_cert),
        ],
        tmp / "collector.log",
        env_for(tmp),
    )
    wait_for(lambda: accepting(port) or not proc.alive(), "the TLS collector to listen")
    assert proc.alive(), proc.output()
    return proc


def tls_flags(certs: CertFiles) -> list[str]:
    cert, key = certs.clients[CLIENT]
    return ["--tls-ca", str(certs.ca_cert), "--tls-cert", str(cert), "--tls-key", str(key)]


def loaded_tls_libraries(pid: int) -> set[str]:
    maps = Path(f"/proc/{pid}/maps").read_text()
    return {name for name in ("libssl", "libcrypto", "_ssl.", "_hashlib.") if name in maps}


def test_agent_process_ships_over_mutual_tls_without_stdlib_ssl(
    sqlite_url: str, tmp_path: Path
) -> None:
    certs = make_certs(tmp_path / "pki", ["127.0.0.1"], [CLIENT])
    store = open_store(sqlite_url)
    _, token = add_dealer(store, "Sunrise Motors")
    port = free_port()
    collector = start_mtls_collector(sqlite_url, port, certs, tmp_path)
    agent = Proc(
        [
            *DEALERPULSE,
            "agent",
            "--collector",
            f"127.0.0.1:{port}",
            "--token",
            token,
            "--interval",
            "0.5",
            "--spool",
            str(tmp_path / "spool.db"),
            *tls_flags(certs),
        ],
        tmp_path / "agent.log",
        env_for(tmp_path),
    )
    try:
        wait_for(
            lambda: any(s.name == "cpu.percent" for s in store.latest_samples("sunrise-motors")),
            "host metrics over mutual TLS",
        )
        assert loaded_tls_libraries(agent.popen.pid) == set()
    finally:
        assert agent.terminate() == 0, agent.output()
        assert collector.terminate() == 0, collector.output()
        store.close()


def test_ssl_stays_importable_in_the_agent_process_after_grpc(tmp_path: Path) -> None:
    """What needs ssl later (HTTPS probes load http.client then) still gets it."""
    code = (
        "import sys\n"
        "from agent.footprint import import_grpc_without_stdlib_ssl\n"
        "assert import_grpc_without_stdlib_ssl()\n"
        "import grpc.aio, agent.runner\n"
        "assert 'ssl' not in sys.modules and '_hashlib' not in sys.modules, 'ssl loaded'\n"
        "import http.client\n"
        "assert hasattr(http.client, 'HTTPSConnection'), 'no HTTPS after grpc'\n"
        "assert not import_grpc_without_stdlib_ssl(), 'a second call must change nothing'\n"
        "print('ok')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env_for(tmp_path),
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
