"""Sentry: nothing imported without SENTRY_DSN; with it, an unhandled error becomes an event."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from collector.sentry import SentryError, init_sentry
from collector.store import SQLAlchemyMetricStore
from dealerpulse.clock import FakeClock
from reporter.http.app import create_app
from reporter.http.settings import HttpSettings

from .harness import ACME, Client, Tokens, served
from .test_api import ExplodingCore

REPO = Path(__file__).resolve().parents[2]


def test_without_a_dsn_sentry_is_never_imported() -> None:
    code = (
        "import sys\n"
        "import collector.server, reporter.http.app\n"
        "from collector.sentry import init_sentry, report_exception\n"
        "assert init_sentry({'SENTRY_DSN': ''}, 'collector') is False\n"
        "report_exception(ValueError('x'))\n"
        "assert 'sentry_sdk' not in sys.modules, 'sentry_sdk was imported'\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("SENTRY_DSN", None)
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr


def test_a_malformed_dsn_is_refused_by_name() -> None:
    with pytest.raises(SentryError, match="SENTRY_DSN"):
        init_sentry({"SENTRY_DSN": "not a dsn"}, "reporter")


def _decoded(raw: bytes, encoding: str | None) -> bytes:
    """An envelope as sent: sentry-sdk compresses with brotli when that is installed."""
    if encoding == "gzip":
        return gzip.decompress(raw)
    if encoding == "br":
        import brotli  # type: ignore[import-untyped]

        return bytes(brotli.decompress(raw))
    return raw


class FakeIngest:
    """A local HTTP server playing Sentry's ingest endpoint; keeps the request bodies."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.arrived = threading.Condition()
        ingest = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                raw = _decoded(raw, self.headers.get("Content-Encoding"))
                with ingest.arrived:
                    ingest.bodies.append(raw)
                    ingest.arrived.notify_all()
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]

    def wait_for(self, needle: bytes, timeout_s: float = 10.0) -> bool:
        with self.arrived:
            return self.arrived.wait_for(
                lambda: any(needle in body for body in self.bodies), timeout_s
            )


@pytest.fixture
def ingest() -> Iterator[FakeIngest]:
    fake = FakeIngest()
    thread = threading.Thread(target=fake.server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        fake.server.shutdown()
        fake.server.server_close()
        thread.join(10)


@pytest.fixture
def sentry_on(ingest: FakeIngest) -> Iterator[None]:
    import sentry_sdk

    assert init_sentry({"SENTRY_DSN": f"http://key@127.0.0.1:{ingest.port}/1"}, "reporter")
    try:
        yield
    finally:
        sentry_sdk.get_client().close(timeout=2)
        sentry_sdk.get_global_scope().set_client(None)


def test_an_unhandled_error_reaches_sentry_without_the_token(
    sentry_on: None,
    ingest: FakeIngest,
    store: SQLAlchemyMetricStore,
    tokens: Tokens,
    clock: FakeClock,
) -> None:
    import sentry_sdk

    app = create_app(ExplodingCore(store, clock), store, HttpSettings(), clock)
    with served(app) as port:
        answer = Client(port, tokens.admin).get(f"/api/ai/performance-monitoring?dealerId={ACME}")
    assert answer.status == 500
    sentry_sdk.flush(timeout=5)
    assert ingest.wait_for(b"secret internal detail")
    assert all(tokens.admin.encode() not in body for body in ingest.bodies)
