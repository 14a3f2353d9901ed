"""``dealerpulse up``: the embedded setup — a collector and one local agent in one process.

It registers a dealer ``local`` on first start and keeps that dealer's token in
the state directory (mode 0600), so restarts reuse the same dealer and agent.
The local agent runs its API intake, by default a unix socket in the state
directory (``$DEALERPULSE_INTAKE`` overrides it, ``off`` disables it), so a
dealer app on this host can send middleware records: start the app with
``DEALERPULSE_INTAKE`` set to the address the "is up" line names.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent.instrument.wire import DEFAULT_UDP_ADDRESS, IntakeAddress, WireError, parse_address
from agent.runner import build_agent
from agent.settings import INTAKE_OFF, AgentConfig
from collector.abc import MetricStore
from collector.server import CollectorServer
from collector.settings import CollectorSettings
from collector.store import SQLAlchemyMetricStore, open_store
from dealerpulse import tokens
from dealerpulse.clock import SystemClock
from dealerpulse.config import redact_url

logger = logging.getLogger(__name__)

LOCAL_DEALER_ID = "local"
LOCAL_DEALER_NAME = "Local dealer"
TOKEN_FILE = "local-agent.token"
INTAKE_FILE = "intake.sock"
INTAKE_ENV = "DEALERPULSE_INTAKE"
# sun_path holds 108 bytes on Linux (104 on macOS), the terminating NUL included.
_MAX_SOCKET_PATH = 100


def local_intake(state_dir: Path, environ: dict[str, str] | None = None) -> IntakeAddress | None:
    """Where the local agent listens for the apps' records; None when switched off.

    ``$DEALERPULSE_INTAKE`` if set (it is also what the apps read), else a
    socket in the state dir, else, when that path is too long for a unix
    socket, one in a per-user directory under the temp dir.
    """
    environ = dict(os.environ) if environ is None else environ
    configured = environ.get(INTAKE_ENV, "").strip()
    if configured.lower() in INTAKE_OFF:
        return None
    if configured:
        try:
            return parse_address(configured)
        except WireError as exc:
            raise ValueError(f"{INTAKE_ENV}: {exc}") from exc
    if sys.platform == "win32":  # no unix datagram sockets there
        return parse_address(DEFAULT_UDP_ADDRESS)
    path = state_dir / INTAKE_FILE
    if len(os.fsencode(path)) > _MAX_SOCKET_PATH:
        short = Path(tempfile.gettempdir()) / f"dealerpulse-{os.getuid()}" / INTAKE_FILE
        logger.info("%s is too long for a unix socket; the intake uses %s", path, short)
        path = short
    return IntakeAddress(path=str(path))


def ensure_local_dealer(store: SQLAlchemyMetricStore, state_dir: Path) -> str:
    """The local dealer's token: read from the state dir, or issued and saved there."""
    token_path = state_dir / TOKEN_FILE
    now = SystemClock().now()
    if token_path.exists():
        token = token_path.read_text().strip()
        if _token_valid(store, token):
            return token
        logger.warning(
            "%s holds no valid token for dealer %r; issuing a new one", token_path, LOCAL_DEALER_ID
        )
    token = tokens.new_token(LOCAL_DEALER_ID)
    if store.get_dealer(LOCAL_DEALER_ID) is None:
        store.create_dealer(LOCAL_DEALER_ID, LOCAL_DEALER_NAME, tokens.hash_token(token), now)
    else:
        store.add_token(LOCAL_DEALER_ID, tokens.hash_token(token), now)
    state_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(token_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(token + "\n")
    return token


def _token_valid(store: MetricStore, token: str) -> bool:
    try:
        dealer_id = tokens.parse_token(token).dealer_id
    except tokens.TokenError:
        return False
    return dealer_id == LOCAL_DEALER_ID and any(
        tokens.token_matches(token, h) for h in store.token_hashes(dealer_id)
    )


async def _start_reporter(
    store: SQLAlchemyMetricStore, listen: str | None, http_listen: str | None
) -> Any:
    """The reporter on the same store, with the dashboard when ``http_listen`` is set
    (None when ``listen`` is None)."""
    if listen is None:
        return None
    from dealerpulse.clock import SystemClock
    from reporter.server import ReporterServer, http_part
    from reporter.settings import ReporterSettings

    settings = ReporterSettings(listen=listen, http=http_listen)
    http = http_part(settings, store, SystemClock()) if http_listen else None
    reporter = ReporterServer(store, listen, settings, http=http)
    await reporter.start()
    return reporter


def dashboard_url(http_listen: str, port: int, token: str) -> str:
    """The dashboard signed in as the local dealer (the page drops the token from the
    address bar once it has read it)."""
    host = http_listen.rpartition(":")[0].strip("[]") or "127.0.0.1"
    return f"http://{host}:{port}/?token={token}"


async def run_embedded(
    *,
    listen: str,
    db_url: str,
    state_dir: Path,
    interval_s: float,
    stop: asyncio.Event,
    reporter_listen: str | None = None,
    http_listen: str | None = None,
    announce: Callable[[str], None] | None = None,
) -> None:
    """Collector, reporter (with the dashboard) and one local agent on one store.

    ``announce`` receives the dashboard's URL, which carries the local dealer's
    token: it goes to the operator's terminal, never to the log.
    """
    state_dir.mkdir(parents=True, exist_ok=True)
    store = await asyncio.to_thread(open_store, db_url)
    try:
        token = await asyncio.to_thread(ensure_local_dealer, store, state_dir)
        server = CollectorServer(store, listen, CollectorSettings(listen=listen, db=db_url))
        port = await server.start()
        try:
            reporter = await _start_reporter(store, reporter_listen, http_listen)
        except BaseException:
            await server.stop(1.0)
            raise
        reporter_at = (
            f"{reporter_listen.rpartition(':')[0]}:{reporter.port}"
            if reporter is not None and reporter_listen
            else "off"
        )
        host = listen.rpartition(":")[0]
        intake = local_intake(state_dir)
        agent = build_agent(
            AgentConfig(
                collector=f"{host}:{port}",
                token=token,
                interval_s=interval_s,
                spool_path=state_dir / "agent-spool.db",
                intake=intake,
            )
        )
        running = asyncio.create_task(agent.run())
        if reporter is not None and reporter.http_port and http_listen and announce:
            announce(f"Dashboard: {dashboard_url(http_listen, reporter.http_port, token)}")
        logger.info(
            "DealerPulse is up: collector on %s:%s storing into %s; reporter on %s; local agent "
            "every %ss, API intake %s. Run `dealerpulse status` to see what arrives; Ctrl-C stops.",
            host,
            port,
            redact_url(db_url),
            reporter_at,
            interval_s,
            f"on {intake} (start apps with {INTAKE_ENV}={intake})" if intake else "off",
        )
        stopped = asyncio.create_task(stop.wait())
        await asyncio.wait({running, stopped}, return_when=asyncio.FIRST_COMPLETED)
        agent.stop()
        await running
        stopped.cancel()
        await server.stop(10.0)
        if reporter is not None:
            await reporter.stop(5.0)
    finally:
        await asyncio.to_thread(store.close)
