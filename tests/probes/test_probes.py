"""Synthetic probes against real local HTTP servers (loopback only)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from agent.probes import (
    NO_ANSWER_STATUS,
    ProbeError,
    ProbeRunner,
    ProbeSource,
    ProbeSpec,
    parse_probes,
)
from collector.health import compute_health
from dealerpulse.clock import FakeClock, from_unix_ms


class Handler(BaseHTTPRequestHandler):
    body = b"status: all good"
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def http_server(handler: type[BaseHTTPRequestHandler] = Handler, port: int = 0) -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.005)


def test_a_server_down_for_a_while_lowers_uptime_by_exactly_that_share() -> None:
    clock = FakeClock()
    with http_server() as port:
        spec = ProbeSpec(f"http://127.0.0.1:{port}/health", name="home", interval_s=10)
        runner = ProbeRunner([spec], clock=clock)
        start = clock.now()
        for _ in range(30):  # 5 minutes up, one check every 10 s
            assert runner.check(spec).ok
            clock.advance(10)
    # The server is gone for 2 minutes: connection refused.
    for _ in range(12):
        result = runner.check(spec)
        assert not result.ok
        assert result.status_code == NO_ANSWER_STATUS
        assert "no answer" in result.error
        clock.advance(10)
    with http_server(port=port):  # back on the same port
        for _ in range(18):
            assert runner.check(spec).ok
            clock.advance(10)
    end = clock.now()
    stats = runner.aggregator.drain(int(end.timestamp() * 1000))
    [stat] = stats
    assert (stat.route, stat.source, stat.count, stat.errors) == ("probe:home", "probe", 60, 12)
    assert "no answer" in stat.last_error
    health = compute_health("d1", start, end, stats)
    assert health.uptime_source == "probes"
    assert health.uptime_percent == pytest.approx(100 * 48 / 60)
    assert health.status.value == "critical"  # 80 % < 99 %


def test_wrong_status_body_and_timeout_are_failures() -> None:
    class Slow(Handler):
        def do_GET(self) -> None:
            if self.path == "/slow":
                self.server.release.wait(10)  # type: ignore[attr-defined]
            super().do_GET()

    clock = FakeClock()
    with http_server(Slow) as port:
        base = f"http://127.0.0.1:{port}"
        runner = ProbeRunner([], clock=clock)
        assert not runner.check(ProbeSpec(base + "/", expected_status=204)).ok
        missing = runner.check(ProbeSpec(base + "/", body_contains="all bad"))
        assert (missing.ok, missing.status_code) == (False, 200)
        assert "body does not contain" in missing.error
        assert runner.check(ProbeSpec(base + "/", body_contains="all good")).ok
        release = threading.Event()
        slow = ProbeSpec(base + "/slow", timeout_s=0.2, interval_s=1)
        with _server_attribute(port, release):
            timed_out = runner.check(slow)
            release.set()
        assert not timed_out.ok
        assert "timed out" in timed_out.error.lower() or "timeout" in timed_out.error.lower()


@contextmanager
def _server_attribute(port: int, release: threading.Event) -> Iterator[None]:
    # ThreadingHTTPServer instances are not reachable from the test; patch the class.
    ThreadingHTTPServer.release = release  # type: ignore[attr-defined]
    try:
        yield
    finally:
        del ThreadingHTTPServer.release  # type: ignore[attr-defined]


def test_runner_threads_check_on_their_interval_and_stop_promptly() -> None:
    clock = FakeClock()
    with http_server() as port:
        spec = ProbeSpec(f"http://127.0.0.1:{port}/", interval_s=0.02, timeout_s=0.02)
        runner = ProbeRunner([spec], clock=clock)
        source = ProbeSource(runner)
        runner.start()
        try:
            wait_until(lambda: runner.aggregator.records >= 3, "three checks")
        finally:
            runner.stop()
        assert not any(t.is_alive() for t in threading.enumerate() if "probe" in t.name)
    [up] = source.collect(123)
    assert (up.name, up.value, up.labels, up.time_ms) == (
        "probe.up",
        1.0,
        (("probe", spec.url),),
        123,
    )


def test_probe_configuration_is_validated_with_clear_errors() -> None:
    specs = parse_probes(
        [
            "http://127.0.0.1:8080/",
            {"url": "https://127.0.0.1/x", "name": "x", "method": "head", "timeout_s": 1},
        ]
    )
    assert [s.route for s in specs] == ["probe:http://127.0.0.1:8080/", "probe:x"]
    assert specs[1].method == "HEAD"
    assert parse_probes("http://127.0.0.1/a http://127.0.0.1/b")[1].url == "http://127.0.0.1/b"
    bad: list[tuple[Any, str]] = [
        (["ftp://127.0.0.1/"], "url must be"),
        ([{"url": "http://127.0.0.1/", "interval_s": 0}], "interval_s"),
        ([{"url": "http://127.0.0.1/", "timeout_s": 60}], "timeout_s must not exceed"),
        ([{"url": "http://127.0.0.1/", "expected_status": 42}], "expected_status"),
        ([{"url": "http://127.0.0.1/", "color": "red"}], "unknown key 'color'"),
        ([{"name": "x"}], "url is required"),
        (["http://127.0.0.1/", "http://127.0.0.1/"], "unique"),
        (42, "must be a list"),
    ]
    for value, message in bad:
        with pytest.raises(ProbeError, match=message):
            parse_probes(value)


def test_refused_connection_is_quick_and_names_the_reason() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    clock = FakeClock()
    result = ProbeRunner([], clock=clock).check(ProbeSpec(f"http://127.0.0.1:{port}/"))
    assert not result.ok
    assert "ConnectionRefused" in result.error
    assert from_unix_ms(result.time_ms) == clock.now() - timedelta(0)
