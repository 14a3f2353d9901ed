"""``dealerpulse reporter``, ``analytics`` and ``report``: the reporter server and its clients.

grpc, the generated stubs and :mod:`reporter.client` (the protobuf edge,
answering model objects) are imported only when a command runs, so building
the ``dealerpulse`` parser stays cheap. A refused call prints its gRPC status
and message and exits 1.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dealerpulse import table
from dealerpulse.cli import Command
from dealerpulse.config import ConfigError, Option, host_port, optional_text, path

if TYPE_CHECKING:
    from reporter.client import ReporterClient
    from reporter.model import Analytics

logger = logging.getLogger(__name__)

CLIENT_OPTIONS = [
    Option(
        "reporter",
        host_port,
        "127.0.0.1:50052",
        "reporter gRPC address HOST:PORT",
        env=("DEALERPULSE_REPORTER",),
    ),
    Option("token", optional_text, None, "admin, dealer or viewer token", secret=True),
    Option(
        "tls_ca",
        lambda value: None if value in (None, "") else path(value),
        None,
        "PEM CA bundle of the reporter's certificate (enables TLS)",
    ),
]
FORMATS = ("html", "json", "text")


def _reporter_options() -> Sequence[Option]:
    from reporter.settings import REPORTER_OPTIONS

    return REPORTER_OPTIONS


def reporter_commands() -> list[Command]:
    return [
        Command(
            "reporter",
            "run the reporter (analytics gRPC server; --http adds the HTTP API and dashboard)",
            _reporter_options,
            run_reporter,
        ),
        Command(
            "analytics",
            "analytics of a dealer (or every dealer) over a range, from a reporter",
            CLIENT_OPTIONS,
            _client("analytics", analytics),
            extra=_analytics_args,
        ),
        Command(
            "report",
            "generate a report on a reporter and save it",
            CLIENT_OPTIONS,
            _client("report", report),
            extra=_report_args,
        ),
    ]


def out(text: str = "") -> None:
    sys.stdout.write(text + "\n")


# ---- the server


def run_reporter(args: argparse.Namespace, settings: dict[str, Any]) -> int:
    from dealerpulse.commands import run_service
    from reporter.server import run_reporter as serve

    return run_service(lambda stop: serve(settings, stop))


# ---- clients


Work = Callable[[argparse.Namespace, "ReporterClient"], int]


def _client(name: str, work: Work) -> Callable[[argparse.Namespace, dict[str, Any]], int]:
    def handler(args: argparse.Namespace, settings: dict[str, Any]) -> int:
        from reporter.client import ReporterCallError, connect

        token = settings.get("token")
        if not token:
            raise ConfigError(f"token: give --token, DEALERPULSE_TOKEN or token in [{name}]")
        root = _read_ca(settings.get("tls_ca"))
        try:
            with connect(settings["reporter"], token, root) as client:
                return work(args, client)
        except ReporterCallError as exc:
            sys.stderr.write(f"dealerpulse {name}: {exc.status}: {exc.details}\n")
            return 1

    return handler


def _read_ca(ca: Path | None) -> bytes | None:
    if ca is None:
        return None
    try:
        return ca.read_bytes()
    except OSError as exc:
        raise ConfigError(f"tls_ca: cannot read {ca}: {exc}") from exc


def _scope_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dealer", default="", help="dealer id (default: every dealer; admin tokens only)"
    )
    parser.add_argument(
        "--range",
        dest="time_range",
        default="24h",
        help="1h, 24h, 7d, 30d or <n>m/<n>h/<n>d, ending now (default: 24h)",
    )


def _analytics_args(parser: argparse.ArgumentParser) -> None:
    _scope_args(parser)
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def _report_args(parser: argparse.ArgumentParser) -> None:
    _scope_args(parser)
    parser.add_argument("--format", choices=FORMATS, default="html", help="default: html")
    parser.add_argument(
        "--out", type=Path, required=True, help="file to write the report to ('-': stdout)"
    )


def analytics(args: argparse.Namespace, client: ReporterClient) -> int:
    found = client.analytics(args.dealer or None, args.time_range)
    if args.json:
        # The HTTP API's JSON: one format for every machine reader.
        from reporter.http.jsonify import analytics_json

        out(json.dumps(analytics_json(found), indent=2))
    else:
        out(render_analytics(found))
    return 0


def report(args: argparse.Namespace, client: ReporterClient) -> int:
    from reporter.model import ReportFormat

    record = client.generate_report(args.dealer or None, args.time_range, ReportFormat(args.format))
    if str(args.out) == "-":
        sys.stdout.buffer.write(record.body)
        sys.stdout.flush()
        return 0
    try:
        args.out.write_bytes(record.body)
    except OSError as exc:
        sys.stderr.write(f"dealerpulse report: cannot write {args.out}: {exc}\n")
        return 1
    out(
        f"report {record.report_id} ({record.format.value}, {len(record.body)} bytes) "
        f"written to {args.out}: {record.title}"
    )
    return 0


# ---- the readable table


def render_analytics(found: Analytics) -> str:
    data = found.data
    summary = data.summary
    lines = [
        f"analytics of {data.dealer_id or 'every dealer'}, "
        f"{data.range.start:%Y-%m-%d %H:%M}Z to {data.range.end:%Y-%m-%d %H:%M}Z "
        f"(step {_duration(data.step.total_seconds())})",
        f"  requests {summary.requests}  errors {summary.errors} "
        f"({_num(summary.error_rate_percent, 3)}%)  throughput "
        f"{summary.throughput_per_min:.1f}/min  uptime {_num(summary.uptime_percent, 2)}%",
        f"  response ms: avg {_num(summary.avg_ms)}  p50 {_num(summary.p50_ms)}  "
        f"p95 {_num(summary.p95_ms)}  p99 {_num(summary.p99_ms)}  peak {_num(summary.peak_ms)}",
    ]
    if found.trends:
        lines += ["", "TRENDS", _trend_table(found)]
    if data.endpoints:
        lines += ["", "ENDPOINTS", _endpoint_table(found)]
    if data.resources:
        lines += ["", "RESOURCES", _resource_table(found)]
    lines += ["", "RECOMMENDATIONS"]
    if not found.recommendations:
        lines.append("  (none)")
    for item in found.recommendations:
        where = f" [{item.endpoint}]" if item.endpoint else ""
        lines.append(
            f"  {item.priority}. {item.title}{where} "
            f"(impact {item.impact.value}, effort {item.effort.value})"
        )
        lines.append(f"     {item.description}")
    return "\n".join(lines)


def _trend_table(found: Analytics) -> str:
    return table.render(
        ["METRIC", "DIRECTION", "METHOD", "N", "P-VALUE", "SLOPE/h", "CHANGE%"],
        [
            [
                t.metric,
                t.direction.value,
                t.method,
                t.n,
                _num(t.p_value, 4),
                _num(t.slope_per_hour, 3),
                _num(t.change_percent),
            ]
            for t in found.trends
        ],
    )


def _endpoint_table(found: Analytics) -> str:
    return table.render(
        ["ENDPOINT", "METHOD", "REQUESTS", "CALLS/h", "ERRORS%", "AVG ms", "P95 ms", "P99 ms"],
        [
            [
                e.route,
                e.method,
                e.requests,
                f"{e.calls_per_hour:.0f}",
                _num(e.error_rate_percent, 3),
                _num(e.avg_ms),
                _num(e.p95_ms),
                _num(e.p99_ms),
            ]
            for e in found.data.endpoints
        ],
    )


def _resource_table(found: Analytics) -> str:
    return table.render(
        ["RESOURCE", "LABELS", "AVG", "PEAK", "LATEST", "UNIT"],
        [
            [
                r.name,
                ",".join(f"{k}={v}" for k, v in sorted(r.labels.items())) or "-",
                _num(r.avg),
                _num(r.peak),
                _num(r.latest),
                r.unit,
            ]
            for r in found.data.resources
        ],
    )


def _num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"
