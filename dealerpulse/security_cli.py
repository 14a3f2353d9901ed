"""Security commands: ``dealerpulse certs`` and the token commands of ``dealerpulse dealer``.

Tokens are printed once, when made; the store keeps only their SHA-256, and
listings show a fingerprint (the first hex digits of that hash) by which
``dealer revoke --token-prefix`` picks one token. A revocation needs no
restart: collectors re-check tokens every ``auth_cache_ttl_s`` (10 s), and
open ingest streams end at their next batch after that.

Server-side packages are imported only when a command runs.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from dealerpulse import table
from dealerpulse.cli import Command
from dealerpulse.config import DB_OPTION, default_database_url

logger = logging.getLogger(__name__)


def out(text: str = "") -> None:
    sys.stdout.write(text + "\n")


def _open_store(settings: dict[str, Any]) -> Any:
    from collector.store import open_store

    return open_store(str(settings.get("db") or default_database_url()))


def _fail(command: str, message: str) -> int:
    sys.stderr.write(f"dealerpulse {command}: {message}\n")
    return 1


# ---- certs


def certs_command() -> Command:
    return Command(
        "certs",
        "make a private CA, a server certificate and client certificates (TLS, mutual TLS)",
        [],
        run_certs,
        extra=_certs_args,
    )


def _certs_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, help="directory for the PEM files")
    parser.add_argument(
        "--hosts",
        default="127.0.0.1,localhost",
        help="names and IP addresses of the server, comma-separated (its certificate's SANs; "
        "default: 127.0.0.1,localhost)",
    )
    parser.add_argument(
        "--client",
        dest="clients",
        action="append",
        default=[],
        metavar="NAME",
        help="also make a client certificate NAME (for mutual TLS); repeatable",
    )
    parser.add_argument(
        "--days", type=int, default=365, help="validity of the certificates (default: 365)"
    )


def run_certs(args: argparse.Namespace, settings: dict[str, Any]) -> int:
    from dealerpulse.certs import CertError, make_certs

    hosts = [host.strip() for host in args.hosts.split(",") if host.strip()]
    if args.days <= 0:
        return _fail("certs", f"--days must be positive, got {args.days}")
    try:
        files = make_certs(args.out, hosts, args.clients, days=args.days)
    except (CertError, OSError) as exc:
        return _fail("certs", str(exc))
    out(f"CA certificate:     {files.ca_cert}   (give to clients: --tls-ca)")
    out(f"CA key:             {files.ca_key}   (keep offline; signs new certificates)")
    out(f"server certificate: {files.server_cert}  key: {files.server_key}")
    out(f"  collector: --tls-cert {files.server_cert} --tls-key {files.server_key}")
    out(f"  mutual TLS: add --tls-client-ca {files.ca_cert}")
    for name, (cert, key) in files.clients.items():
        out(f"client {name}: --tls-cert {cert} --tls-key {key}")
    return 0


# ---- dealer tokens


def token_commands() -> list[Command]:
    return [
        Command(
            "add-token",
            "issue another token of a dealer (role dealer, or viewer: read-only); shown once",
            [DB_OPTION],
            add_token,
            section="dealer",
            extra=_add_token_args,
        ),
        Command(
            "rotate-token",
            "issue a new dealer token and revoke the old ones (at once, or after --grace)",
            [DB_OPTION],
            rotate_token,
            section="dealer",
            extra=_rotate_args,
        ),
        Command(
            "revoke",
            "revoke one token of a dealer (--token-prefix) or all of them (--all)",
            [DB_OPTION],
            revoke,
            section="dealer",
            extra=_revoke_args,
        ),
        Command(
            "tokens",
            "list a dealer's tokens: fingerprint, role, created, revoked",
            [DB_OPTION],
            list_tokens,
            section="dealer",
            extra=_tokens_args,
        ),
    ]


def _dealer_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dealer_id", metavar="DEALER", help="dealer id, e.g. sunrise-motors")


def _add_token_args(parser: argparse.ArgumentParser) -> None:
    _dealer_arg(parser)
    parser.add_argument(
        "--role",
        choices=["dealer", "viewer"],
        default="viewer",
        help="viewer: reads the dealer's data only; dealer: also writes (agents) (default: viewer)",
    )


def _rotate_args(parser: argparse.ArgumentParser) -> None:
    from dealerpulse.alerts_cli import duration

    _dealer_arg(parser)
    parser.add_argument(
        "--grace",
        type=duration,
        default=None,
        metavar="DURATION",
        help="keep the old dealer tokens valid this long (e.g. 1h) while agents are "
        "reconfigured; default: revoke them at once",
    )


def _revoke_args(parser: argparse.ArgumentParser) -> None:
    _dealer_arg(parser)
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument(
        "--token-prefix",
        metavar="FINGERPRINT",
        help="the token whose fingerprint starts with this (at least 6 hex digits, "
        "as `dealer tokens` shows)",
    )
    which.add_argument("--all", action="store_true", help="every token of the dealer")


def _tokens_args(parser: argparse.ArgumentParser) -> None:
    _dealer_arg(parser)
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def _issue(dealer_id: str) -> tuple[str, str]:
    from dealerpulse import tokens

    token = tokens.new_token(dealer_id)
    return token, tokens.hash_token(token)


def _print_token(dealer_id: str, role: str, token: str, token_hash: str) -> None:
    from collector.store.store import FINGERPRINT_LEN

    out(f"dealer:      {dealer_id}")
    out(f"role:        {role}")
    out(f"token:       {token}")
    out(f"fingerprint: {token_hash[:FINGERPRINT_LEN]}")
    out("Keep the token now: it is shown once and only its hash is stored.")


def add_token(args: argparse.Namespace, settings: dict[str, Any]) -> int:
    from collector.abc import UnknownDealer

    store = _open_store(settings)
    try:
        token, token_hash = _issue(args.dealer_id)
        store.add_token(args.dealer_id, token_hash, datetime.now(UTC), role=args.role)
    except (UnknownDealer, ValueError) as exc:
        return _fail("dealer add-token", str(exc))
    finally:
        store.close()
    _print_token(args.dealer_id, args.role, token, token_hash)
    return 0


def rotate_token(args: argparse.Namespace, settings: dict[str, Any]) -> int:
    from collector.abc import UnknownDealer

    grace: timedelta = args.grace or timedelta(0)
    now = datetime.now(UTC)
    store = _open_store(settings)
    try:
        token, token_hash = _issue(args.dealer_id)
        revoked = store.rotate_token(args.dealer_id, token_hash, now, now + grace)
    except (UnknownDealer, ValueError) as exc:
        return _fail("dealer rotate-token", str(exc))
    finally:
        store.close()
    _print_token(args.dealer_id, "dealer", token, token_hash)
    when = "now" if not grace else f"at {(now + grace):%Y-%m-%d %H:%M:%S}Z"
    out(f"{revoked} old dealer token(s) stop working {when} (collectors notice within 10 s).")
    return 0


def revoke(args: argparse.Namespace, settings: dict[str, Any]) -> int:
    store = _open_store(settings)
    try:
        if store.get_dealer(args.dealer_id) is None:
            return _fail("dealer revoke", f"dealer {args.dealer_id!r} is not registered")
        prefix = None if args.all else args.token_prefix.strip().lower()
        count = store.revoke_tokens(args.dealer_id, datetime.now(UTC), prefix)
    except ValueError as exc:
        return _fail("dealer revoke", str(exc))
    finally:
        store.close()
    if count == 0:
        return _fail("dealer revoke", "no valid token matched; see `dealerpulse dealer tokens`")
    out(f"revoked {count} token(s) of {args.dealer_id} (collectors notice within 10 s)")
    return 0


def list_tokens(args: argparse.Namespace, settings: dict[str, Any]) -> int:
    store = _open_store(settings)
    try:
        records = store.list_tokens(args.dealer_id)
    finally:
        store.close()
    now = datetime.now(UTC)
    rows = [
        {
            "fingerprint": r.fingerprint,
            "role": r.role,
            "created": r.created_at.isoformat(),
            "revoked": r.revoked_at.isoformat() if r.revoked_at else None,
            "valid": r.valid_at(now),
        }
        for r in records
    ]
    if args.json:
        out(json.dumps(rows, indent=2))
        return 0
    out(
        table.render(
            ["FINGERPRINT", "ROLE", "CREATED", "REVOKED", "VALID"],
            [
                [r["fingerprint"], r["role"], r["created"], r["revoked"] or "-", r["valid"]]
                for r in rows
            ],
        )
    )
    return 0
