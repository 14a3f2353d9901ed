"""A local HTTP server that answers like Slack: an incoming webhook and the Web API.

Tests script answers per path (status, body, headers); without a script the
answer is Slack's success. Everything received is recorded, and messages
posted through chat.postMessage form the channel history that
conversations.history returns.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

WEBHOOK_PATH = "/services/T000/B000/secret"
POST_MESSAGE = "/api/chat.postMessage"
HISTORY = "/api/conversations.history"


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any
    headers: tuple[tuple[str, str], ...] = ()


@dataclass
class SlackState:
    scripts: dict[str, deque[Answer]] = field(default_factory=dict)
    received: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class FakeSlack:
    def __init__(self, state: SlackState, port: int) -> None:
        self.state, self.port = state, port

    @property
    def webhook_url(self) -> str:
        return f"http://127.0.0.1:{self.port}{WEBHOOK_PATH}"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/"

    def script(self, path: str, *answers: Answer) -> None:
        with self.state.lock:
            self.state.scripts.setdefault(path, deque()).extend(answers)

    def received(self, path: str) -> list[dict[str, Any]]:
        with self.state.lock:
            return [body for where, body in self.state.received if where == path]

    def remember(self, message: dict[str, Any]) -> None:
        """Put a message in the channel history, as if posted earlier."""
        with self.state.lock:
            self.state.history.append(message)


def _handler(state: SlackState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # quiet test output
            pass

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            self._answer(parts.path, dict(parse_qsl(parts.query)))

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length", "0"))).decode()
            if "json" in self.headers.get("Content-Type", ""):
                body = json.loads(raw)
            else:
                body = dict(parse_qsl(raw))
            self._answer(urlsplit(self.path).path, body)

        def _answer(self, path: str, body: dict[str, Any]) -> None:
            with state.lock:
                state.received.append((path, body))
                queued = state.scripts.get(path)
                answer = queued.popleft() if queued else _success(state, path, body)
            encoded = (
                answer.body.encode()
                if isinstance(answer.body, str)
                else json.dumps(answer.body).encode()
            )
            self.send_response(answer.status)
            kind = "text/html" if isinstance(answer.body, str) else "application/json"
            self.send_header("Content-Type", f"{kind}; charset=utf-8")
            self.send_header("Content-Length", str(len(encoded)))
            for name, value in answer.headers:
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(encoded)

    return Handler


def _success(state: SlackState, path: str, body: dict[str, Any]) -> Answer:
    if path == WEBHOOK_PATH:
        return Answer(200, "ok")
    if path == POST_MESSAGE:
        ts = f"1700000000.{len(state.history) + 1:06d}"
        state.history.append(dict(body, ts=ts))
        return Answer(200, {"ok": True, "channel": body.get("channel"), "ts": ts})
    if path == HISTORY:
        return Answer(200, {"ok": True, "messages": list(reversed(state.history))})
    return Answer(404, {"ok": False, "error": "unknown_method"})


@contextmanager
def fake_slack() -> Iterator[FakeSlack]:
    state = SlackState()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield FakeSlack(state, server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
