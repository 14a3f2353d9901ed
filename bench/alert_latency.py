"""Alert latency: from a threshold breach stored (its batch acked) to the Slack request received.

    python -m bench.alert_latency                         # 20 breaches, 2 s evaluation interval
    python -m bench.alert_latency --breaches 5 --store postgresql

A real collector (``python -m dealerpulse collector`` on a fresh SQLite file
or temporary PostgreSQL database) evaluates alerts every ``--alert-interval-s``
and sends from the outbox every ``--dispatch-interval-s``, with no group wait,
to a local fake Slack webhook (a stdlib HTTP server in this process that
records when each request arrived). One rule, stored before the collector
starts: ``bench.breach`` max over 60 s > 100, critical, ``for_s`` = 0, channel
slack. Each breach is one batch with one sample of a new series (value 1000 +
i, so every breach is its own alert and its Slack message names its value),
sent on one agent stream; the clock starts when the batch is acked STORED and
stops when the Slack request for that value arrives. Breaches are spaced by a
random pause so that they fall at every phase of the evaluation schedule.

Target: p99 under one evaluation interval + 1 s. The outbox dispatch runs on
its own interval, so the bound is about alert interval + dispatch interval +
the tick's and the send's own time.

Prints a table and writes bench/results/alert_latency.json.
"""

from __future__ import annotations

import argparse
import json
import queue
import random
import shlex
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc

from bench.ingest import REPO, BenchError, collector, database, machine, register_dealer
from bench.store_write import DEFAULT_PG_ADMIN
from collector.alerting.repository import insert_rule
from collector.alerting.rules import Aggregation, Comparator, Condition, Rule, Thresholds
from collector.store import open_store
from dealerpulse import tokens
from dealerpulse.v1 import ingest_pb2

RESULTS = REPO / "bench" / "results" / "alert_latency.json"
STREAM_METHOD = "/dealerpulse.v1.Ingest/Stream"
METRIC = "bench.breach"
THRESHOLD = 100.0
BASE_VALUE = 1000
WEBHOOK_PATH = "/services/T000/B000/bench"


class SlackRecorder:
    """A fake Slack incoming webhook that notes when each request arrived (monotonic)."""

    def __init__(self) -> None:
        self._received: list[tuple[float, str]] = []
        self._changed = threading.Condition()
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass  # no access log on the bench's output

            def do_POST(self) -> None:
                arrived = time.monotonic()
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(b"ok")
                with recorder._changed:
                    recorder._received.append((arrived, body.decode(errors="replace")))
                    recorder._changed.notify_all()

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}{WEBHOOK_PATH}"

    def __enter__(self) -> SlackRecorder:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def wait_for(self, marker: str, timeout_s: float) -> float | None:
        """When the first request whose body holds ``marker`` arrived; None on timeout."""

        def found() -> float | None:
            return next((at for at, body in self._received if marker in body), None)

        with self._changed:
            self._changed.wait_for(lambda: found() is not None, timeout=timeout_s)
            return found()

    def count(self) -> int:
        with self._changed:
            return len(self._received)


def breach_rule(dealer_id: str) -> Rule:
    condition = Condition(
        METRIC, Aggregation.MAX, 60, Comparator.GT, Thresholds(critical=THRESHOLD)
    )
    return Rule(
        name="bench breach",
        condition=condition,
        for_s=0,
        dealer_id=dealer_id,
        channels=("slack",),
    )


def store_rule(url: str, dealer_id: str) -> None:
    store = open_store(url)
    try:
        with store.engine.begin() as connection:
            insert_rule(connection, breach_rule(dealer_id), datetime.now(UTC))
    finally:
        store.close()


class AgentStream:
    """One agent's Ingest stream: send a batch, wait for its ack."""

    def __init__(self, target: str, token: str) -> None:
        self._dealer_id = tokens.parse_token(token).dealer_id
        self._channel = grpc.insecure_channel(target)
        self._outbox: queue.Queue[bytes | None] = queue.Queue()
        method = self._channel.stream_stream(
            STREAM_METHOD,
            request_serializer=lambda b: b,
            response_deserializer=ingest_pb2.Ack.FromString,
        )
        requests = iter(self._outbox.get, None)
        metadata = (("authorization", f"Bearer {token}"),)
        self._acks: Iterator[ingest_pb2.Ack] = iter(method(requests, metadata=metadata))
        self._seq = 0

    def send(self, value: float, series: str) -> float:
        """Send one sample; when (monotonic) its batch was acked STORED."""
        self._seq += 1
        now_ms = int(time.time() * 1000)
        batch = ingest_pb2.Batch(
            agent_id="bench-alert-agent",
            dealer_id=self._dealer_id,
            seq=self._seq,
            boot_id="bench",
            hostname="bench-alert-agent",
            agent_version="bench",
            created_unix_ms=now_ms,
        )
        sample = batch.samples.add(name=METRIC, value=value, unit="count", time_unix_ms=now_ms)
        sample.labels["series"] = series
        self._outbox.put(batch.SerializeToString())
        ack = next(self._acks)
        acked = time.monotonic()
        if ack.seq != self._seq or ack.status != ingest_pb2.Ack.STORED:
            raise BenchError(f"batch {self._seq} not stored: {ack}")
        return acked

    def close(self) -> None:
        self._outbox.put(None)
        self._channel.close()


def measure(target: str, token: str, slack: SlackRecorder, args: argparse.Namespace) -> list[float]:
    """Latency (s) of each breach."""
    pause = random.Random(args.seed)
    stream = AgentStream(target, token)
    latencies = []
    try:
        for i in range(1, args.breaches + 1):
            # A random phase against the evaluation schedule.
            time.sleep(pause.uniform(0, args.alert_interval_s))
            value = BASE_VALUE + i
            acked = stream.send(float(value), f"b{i:03d}")
            arrived = slack.wait_for(f"({value} > {THRESHOLD:g})", args.timeout_s)
            if arrived is None:
                raise BenchError(f"no Slack request for breach {i} within {args.timeout_s:g} s")
            latencies.append(arrived - acked)
            print(f"breach {i:>3}: {1000 * (arrived - acked):8.0f} ms", flush=True)
    finally:
        stream.close()
    return latencies


def collector_args(slack: SlackRecorder, args: argparse.Namespace) -> list[str]:
    return [
        "--alert-interval-s",
        str(args.alert_interval_s),
        "--dispatch-interval-s",
        str(args.dispatch_interval_s),
        "--alert-group-wait-s",
        "0",
        "--slack-webhook-url",
        slack.url,
        "--no-reports-enabled",
    ]


def run(args: argparse.Namespace) -> list[float]:
    with (
        tempfile.TemporaryDirectory(prefix="dp-alert-latency-") as tmp,
        database(args.store, Path(tmp), args.pg_admin) as url,
        SlackRecorder() as slack,
    ):
        token = register_dealer(url)
        store_rule(url, tokens.parse_token(token).dealer_id)
        with collector(url, Path(tmp), collector_args(slack, args)) as (target, _):
            return measure(target, token, slack, args)


def _quantile(values: list[float], q: int) -> float:
    if len(values) < 2:
        return values[0] if values else 0.0
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.alert_latency",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--breaches", type=int, default=20)
    parser.add_argument("--store", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--alert-interval-s", type=float, default=2.0)
    parser.add_argument("--dispatch-interval-s", type=float, default=0.5)
    parser.add_argument("--timeout-s", type=float, default=60.0, help="per breach")
    parser.add_argument("--seed", type=int, default=8)
    parser.add_argument("--pg-admin", default=DEFAULT_PG_ADMIN)
    parser.add_argument("--json", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if not 1 <= args.breaches <= 999:
        parser.error("--breaches must be between 1 and 999")
    if args.alert_interval_s <= 0 or args.dispatch_interval_s <= 0:
        parser.error("--alert-interval-s and --dispatch-interval-s must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    print(
        f"alert latency: {args.breaches} breaches, {args.store}, evaluation every "
        f"{args.alert_interval_s:g} s, dispatch every {args.dispatch_interval_s:g} s",
        flush=True,
    )
    try:
        latencies = run(args)
    except BenchError as exc:
        print(f"alert latency benchmark failed: {exc}", file=sys.stderr)
        return 1
    target_s = args.alert_interval_s + 1.0
    figures = {
        "p50_ms": round(1000 * _quantile(latencies, 50), 1),
        "p99_ms": round(1000 * _quantile(latencies, 99), 1),
        "min_ms": round(1000 * min(latencies), 1),
        "max_ms": round(1000 * max(latencies), 1),
        "mean_ms": round(1000 * statistics.fmean(latencies), 1),
    }
    met = _quantile(latencies, 99) < target_s
    print(
        f"p50 {figures['p50_ms']:.0f} ms, p99 {figures['p99_ms']:.0f} ms, max "
        f"{figures['max_ms']:.0f} ms; target p99 < {target_s:g} s: {'met' if met else 'NOT met'}"
    )
    report = {
        "benchmark": "alert_latency",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": shlex.join([Path(sys.executable).name, "-m", "bench.alert_latency", *argv]),
        "machine": machine(),
        "settings": {k: v for k, v in vars(args).items() if k not in ("json", "pg_admin")},
        "target_p99_ms": 1000 * target_s,
        "target_met": met,
        **figures,
        "latencies_ms": [round(1000 * s, 1) for s in latencies],
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"results: {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
