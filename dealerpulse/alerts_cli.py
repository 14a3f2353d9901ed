"""``dealerpulse alerts ...``: client commands of the collector's Alerts gRPC service.

grpc, the generated stubs and :mod:`collector.alerting.client` (the protobuf
edge, answering plain dicts) are imported only when a command runs, so
building the ``dealerpulse`` parser stays cheap. A refused call prints its
gRPC status and message and exits 1.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from dealerpulse import table
from dealerpulse.cli import Command
from dealerpulse.clock import SystemClock
from dealerpulse.config import ConfigError, Option, host_port, optional_text, path

if TYPE_CHECKING:
    from collector.alerting.client import AlertsClient
    from dealerpulse.tls import ClientTls

logger = logging.getLogger(__name__)

SECTION = "alerts"

ALERTS_OPTIONS = [
    Option("collector", host_port, "127.0.0.1:50051", "collector gRPC address HOST:PORT"),
    Option("token", optional_text, None, "admin or dealer token", secret=True),
    Option(
        "tls_ca",
        lambda value: None if value in (None, "") else path(value),
        None,
        "PEM CA bundle of the collector's certificate (enables TLS)",
    ),
    Option(
        "tls_cert",
        lambda value: None if value in (None, "") else path(value),
        None,
        "PEM client certificate, for a collector that requires mutual TLS",
    ),
    Option(
        "tls_key",
        lambda value: None if value in (None, "") else path(value),
        None,
        "PEM private key of --tls-cert",
    ),
]


# ---- values on the command line


_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNIT_S = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def duration(value: str) -> timedelta:
    """'90', '90s', '15m', '2h', '1d' -> a positive timedelta."""
    match = _DURATION_RE.match(value)
    if not match or float(match.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"must be a duration such as 90s, 15m, 2h, got {value!r}")
    return timedelta(seconds=float(match.group(1)) * _UNIT_S[match.group(2)])


def moment(value: str) -> datetime:
    """An ISO 8601 time ('2026-03-01T12:00:00Z'; no offset means UTC)."""
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be an ISO 8601 time such as 2026-03-01T12:00:00Z, got {value!r}"
        ) from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def since(value: str) -> datetime | timedelta:
    """A time, or a duration meaning that long ago."""
    if _DURATION_RE.match(value):
        return duration(value)
    return moment(value)


def label(value: str) -> tuple[str, str]:
    key, sep, val = value.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"must be KEY=VALUE, got {value!r}")
    return key.strip(), val.strip()


def positive_id(value: str) -> int:
    if not value.isdigit() or int(value) <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive id, got {value!r}")
    return int(value)


# ---- running a command


Work = Callable[[argparse.Namespace, "AlertsClient"], int]


def _handler(name: str, work: Work) -> Callable[[argparse.Namespace, dict[str, Any]], int]:
    def handler(args: argparse.Namespace, settings: dict[str, Any]) -> int:
        from collector.alerting.client import AlertsCallError, connect

        token = settings.get("token")
        if not token:
            raise ConfigError("token: give --token, DEALERPULSE_TOKEN or token in [alerts]")
        try:
            with connect(settings["collector"], token, client_tls(settings)) as client:
                return work(args, client)
        except AlertsCallError as exc:
            sys.stderr.write(f"dealerpulse alerts {name}: {exc.status}: {exc.details}\n")
            return 1

    return handler


def client_tls(settings: dict[str, Any]) -> ClientTls | None:
    """TLS of a CLI client from tls_ca/tls_cert/tls_key; None (plaintext) when none is set.

    The files are read here, so a bad one is a ConfigError naming it.
    """
    from dealerpulse.tls import ClientTls, TlsError, channel_credentials

    ca, cert, key = settings.get("tls_ca"), settings.get("tls_cert"), settings.get("tls_key")
    if ca is None and cert is None and key is None:
        return None
    try:
        tls = ClientTls(ca, cert, key)
        channel_credentials(tls)
    except TlsError as exc:
        raise ConfigError(str(exc)) from None
    return tls


def out(text: str) -> None:
    sys.stdout.write(text + "\n")


Columns = list[tuple[str, str]]


def show(args: argparse.Namespace, rows: list[dict[str, Any]], columns: Columns) -> int:
    if args.json:
        out(json.dumps(rows, indent=2))
    elif not rows:
        out("(none)")
    else:
        headers = [title for title, _ in columns]
        out(table.render(headers, [[_cell(row[key]) for _, key in columns] for row in rows]))
    return 0


def show_one(args: argparse.Namespace, row: dict[str, Any] | None, done: str) -> int:
    if args.json:
        out(json.dumps(row if row is not None else {"ok": True}, indent=2))
    elif row is None:
        out(done)
    else:
        width = max(len(key) for key in row)
        out("\n".join(f"{key.ljust(width)}  {_cell(value)}" for key, value in row.items()))
    return 0


def _cell(value: Any) -> str:
    if value is None or value == "" or value == {} or value == []:
        return "-"
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items())
    if isinstance(value, list):
        return ",".join(str(item) for item in value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def now() -> datetime:
    return SystemClock().now()


RULE_COLUMNS = [
    ("ID", "id"),
    ("NAME", "name"),
    ("DEALER", "dealer_id"),
    ("METRIC", "metric"),
    ("AGG", "aggregation"),
    ("WINDOW s", "window_s"),
    ("CMP", "comparator"),
    ("THRESHOLDS", "thresholds"),
    ("FOR s", "for_s"),
    ("CHANNELS", "channels"),
    ("ENABLED", "enabled"),
]
ALERT_COLUMNS = [
    ("ID", "id"),
    ("DEALER", "dealer_id"),
    ("TYPE", "type"),
    ("SEVERITY", "severity"),
    ("STATE", "state"),
    ("VALUE", "value"),
    ("THRESHOLD", "threshold"),
    ("STARTED", "started"),
    ("ACK BY", "acknowledged_by"),
    ("MESSAGE", "message"),
]
SILENCE_COLUMNS = [
    ("ID", "id"),
    ("DEALER", "dealer_id"),
    ("RULE", "rule_id"),
    ("LABELS", "label_matchers"),
    ("STARTS", "starts"),
    ("ENDS", "ends"),
    ("BY", "created_by"),
    ("COMMENT", "comment"),
]


# ---- arguments


def _json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def _id(what: str) -> Callable[[argparse.ArgumentParser], None]:
    def extra(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("id", type=positive_id, help=f"id of the {what}")
        _json(parser)

    return extra


def _dealer_filter(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dealer", help="only this dealer id")
    _json(parser)


def _thresholds(parser: argparse.ArgumentParser) -> None:
    for name in ("warning", "critical", "warning_recovery", "critical_recovery"):
        parser.add_argument(
            "--" + name.replace("_", "-"), dest=name, type=float, help=f"{name} level"
        )


def _channels(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--channel",
        dest="channels",
        action="append",
        metavar="NAME",
        help="notification channel (slack, email); repeatable",
    )


def _rule_create_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="a unique rule name")
    parser.add_argument("--metric", required=True, help="stored metric, e.g. cpu.percent")
    parser.add_argument("--aggregation", default="avg", help="avg, max, min, p95 or rate")
    parser.add_argument("--window", type=duration, default=timedelta(minutes=5), help="e.g. 5m")
    parser.add_argument("--comparator", default=">", help=">, >=, < or <=")
    _thresholds(parser)
    parser.add_argument(
        "--for", dest="for_", type=duration, help="how long the condition must hold, e.g. 2m"
    )
    parser.add_argument("--dealer", help="only this dealer (default: every dealer; admin only)")
    parser.add_argument("--label", dest="labels", type=label, action="append", metavar="KEY=VALUE")
    _channels(parser)
    parser.add_argument("--type", dest="alert_type", help="alert type, e.g. cpu")
    parser.add_argument("--disabled", action="store_true", help="create it disabled")
    _json(parser)


def _rule_update_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("id", type=positive_id, help="id of the rule")
    switch = parser.add_mutually_exclusive_group()
    switch.add_argument("--enable", dest="enabled", action="store_true", default=None)
    switch.add_argument("--disable", dest="enabled", action="store_false")
    _thresholds(parser)
    _channels(parser)
    _json(parser)


def _list_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dealer", help="only this dealer id")
    parser.add_argument("--state", choices=["firing", "resolved"])
    parser.add_argument("--severity", choices=["warning", "critical"])
    parser.add_argument("--since", type=since, help="an ISO time, or a duration ago (e.g. 24h)")
    parser.add_argument("--limit", type=positive_id, default=100, help="at most (default: 100)")
    _json(parser)


def _ack_args(parser: argparse.ArgumentParser) -> None:
    _id("alert")(parser)
    parser.add_argument("--by", default="", help="who acknowledges (default: the token's owner)")


def _silence_add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dealer", help="only this dealer (default: every dealer; admin only)")
    parser.add_argument("--rule", type=positive_id, help="only this rule id")
    parser.add_argument("--label", dest="labels", type=label, action="append", metavar="KEY=VALUE")
    parser.add_argument("--start", type=moment, help="ISO time (default: now)")
    end = parser.add_mutually_exclusive_group(required=True)
    end.add_argument("--end", type=moment, help="ISO time")
    end.add_argument("--duration", type=duration, help="from the start, e.g. 2h")
    parser.add_argument("--comment", default="", help="why")
    _json(parser)


def _silences_args(parser: argparse.ArgumentParser) -> None:
    _dealer_filter(parser)
    parser.add_argument("--all", action="store_true", help="also silences that have ended")


# ---- the commands


def rules(args: argparse.Namespace, client: AlertsClient) -> int:
    return show(args, client.list_rules(args.dealer), RULE_COLUMNS)


def rule_create(args: argparse.Namespace, client: AlertsClient) -> int:
    spec = {
        "name": args.name,
        "alert_type": args.alert_type,
        "metric": args.metric,
        "aggregation": args.aggregation,
        "window_s": int(args.window.total_seconds()),
        "comparator": args.comparator,
        "thresholds": _given_thresholds(args),
        "for_s": int(args.for_.total_seconds()) if args.for_ else 0,
        "dealer_id": args.dealer,
        "label_matchers": dict(args.labels or []),
        "channels": args.channels or [],
        "enabled": not args.disabled,
    }
    return show_one(args, client.create_rule(spec), "")


def _given_thresholds(args: argparse.Namespace) -> dict[str, float]:
    names = ("warning", "critical", "warning_recovery", "critical_recovery")
    return {name: getattr(args, name) for name in names if getattr(args, name) is not None}


def rule_get(args: argparse.Namespace, client: AlertsClient) -> int:
    return show_one(args, client.get_rule(args.id), "")


def rule_update(args: argparse.Namespace, client: AlertsClient) -> int:
    from collector.alerting.client import RuleChanges

    changes = RuleChanges(args.enabled, _given_thresholds(args), args.channels)
    if changes == RuleChanges(thresholds={}):
        raise ConfigError(
            "rule-update: nothing to change (give --enable/--disable, levels or --channel)"
        )
    return show_one(args, client.update_rule(args.id, changes), "")


def rule_delete(args: argparse.Namespace, client: AlertsClient) -> int:
    client.delete_rule(args.id)
    return show_one(args, None, f"rule {args.id} deleted")


def alerts_list(args: argparse.Namespace, client: AlertsClient) -> int:
    start = now() - args.since if isinstance(args.since, timedelta) else args.since
    found = client.list_alerts(args.dealer, args.state, args.severity, start, args.limit)
    return show(args, found, ALERT_COLUMNS)


def ack(args: argparse.Namespace, client: AlertsClient) -> int:
    return show_one(args, client.acknowledge(args.id, args.by), "")


def resolve(args: argparse.Namespace, client: AlertsClient) -> int:
    return show_one(args, client.resolve(args.id), "")


def silence_add(args: argparse.Namespace, client: AlertsClient) -> int:
    starts = args.start or now()
    ends = args.end or starts + args.duration
    if ends <= starts:
        raise ConfigError(f"silence-add: --end {ends.isoformat()} is not after the start")
    created = client.add_silence(
        starts, ends, args.dealer, args.rule, dict(args.labels or []), args.comment
    )
    return show_one(args, created, "")


def silences(args: argparse.Namespace, client: AlertsClient) -> int:
    return show(args, client.list_silences(args.dealer, args.all), SILENCE_COLUMNS)


def silence_delete(args: argparse.Namespace, client: AlertsClient) -> int:
    client.delete_silence(args.id)
    return show_one(args, None, f"silence {args.id} deleted")


COMMANDS: list[tuple[str, str, Work, Callable[[argparse.ArgumentParser], None]]] = [
    ("rules", "list alert rules", rules, _dealer_filter),
    ("rule-create", "create an alert rule", rule_create, _rule_create_args),
    ("rule-get", "show one alert rule", rule_get, _id("rule")),
    (
        "rule-update",
        "enable/disable a rule, change its levels or channels",
        rule_update,
        _rule_update_args,
    ),
    ("rule-delete", "delete an alert rule", rule_delete, _id("rule")),
    ("list", "list alerts (episodes)", alerts_list, _list_args),
    ("ack", "acknowledge an alert", ack, _ack_args),
    ("resolve", "resolve an alert by hand", resolve, _id("alert")),
    (
        "silence-add",
        "mute notifications for a dealer, rule or labels",
        silence_add,
        _silence_add_args,
    ),
    ("silences", "list silences in force (or all with --all)", silences, _silences_args),
    ("silence-delete", "delete a silence", silence_delete, _id("silence")),
]


def alert_commands() -> list[Command]:
    return [
        Command(name, text, ALERTS_OPTIONS, _handler(name, work), section=SECTION, extra=extra)
        for name, text, work, extra in COMMANDS
    ]
