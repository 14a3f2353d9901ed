"""Real processes for end-to-end tests: the `dealerpulse` CLI in subprocesses.

Every wait polls a condition with a deadline; nothing sleeps as synchronisation.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

REPO = Path(__file__).resolve().parents[2]
DEALERPULSE = [sys.executable, "-m", "dealerpulse"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(condition: Callable[[], bool], what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(0.05)


def env_for(tmp: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["XDG_DATA_HOME"] = str(tmp / "data")
    env["XDG_STATE_HOME"] = str(tmp / "state")
    env["PYTHONPATH"] = str(REPO)
    # Each test's agents get their own intake socket, not the system-wide default.
    env["DEALERPULSE_INTAKE"] = str(tmp / "intake.sock")
    env.pop("DATABASE_URL", None)
    return env


class Proc:
    """A child process whose output goes to a log file (read back on failure)."""

    started: list[Proc] = []

    def __init__(self, args: list[str], log: Path, env: dict[str, str]) -> None:
        self.args = args
        self.log = log
        self._out: IO[bytes] = open(log, "ab")  # noqa: SIM115 - closed in wait()
        self.popen = subprocess.Popen(args, stdout=self._out, stderr=subprocess.STDOUT, env=env)
        Proc.started.append(self)

    def alive(self) -> bool:
        return self.popen.poll() is None

    def terminate(self, timeout_s: float = 30.0) -> int:
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
        return self.wait(timeout_s)

    def kill9(self) -> None:
        self.popen.kill()
        self.wait(10.0)

    def wait(self, timeout_s: float) -> int:
        try:
            code = self.popen.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(10)
            raise AssertionError(f"{self.args[3:5]} did not stop within {timeout_s} s") from None
        finally:
            self._out.close()
        return code

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def reap_all() -> None:
    """Kill what a failed test left running: no process outlives its test."""
    while Proc.started:
        proc = Proc.started.pop()
        if proc.alive():
            proc.popen.kill()
            proc.popen.wait(10)
        if not proc._out.closed:
            proc._out.close()


def serving(port: int) -> bool:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=1.0
            )
        except grpc.RpcError:
            return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def start_collector(
    db_url: str, port: int, tmp: Path, name: str = "collector", workers: int = 1
) -> Proc:
    proc = Proc(
        [
            *DEALERPULSE,
            "collector",
            "--listen",
            f"127.0.0.1:{port}",
            "--db",
            db_url,
            "--workers",
            str(workers),
        ],
        tmp / f"{name}.log",
        env_for(tmp),
    )
    wait_for(lambda: serving(port) or not proc.alive(), "the collector to serve")
    assert proc.alive(), proc.output()
    return proc


def start_agent(
    port: int, token: str, spool: Path, tmp: Path, interval_s: float, log_name: str = "agent"
) -> Proc:
    return Proc(
        [
            *DEALERPULSE,
            "--log-level",
            "DEBUG",
            "agent",
            "--collector",
            f"127.0.0.1:{port}",
            "--token",
            token,
            "--interval",
            str(interval_s),
            "--spool",
            str(spool),
        ],
        tmp / f"{log_name}.log",
        env_for(tmp),
    )
