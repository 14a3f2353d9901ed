"""``dealerpulse up``: the embedded setup — a collector and one local agent in one process.

It registers a dealer ``local`` on first start and keeps that dealer's token in
the state directory (mode 0600), so restarts reuse the same dealer and agent.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

from agent.runner import build_agent
from agent.settings import AgentConfig
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


async def run_embedded(
    *, listen: str, db_url: str, state_dir: Path, interval_s: float, stop: asyncio.Event
) -> None:
    state_dir.mkdir(parents=True, exist_ok=True)
    store = await asyncio.to_thread(open_store, db_url)
    try:
        token = await asyncio.to_thread(ensure_local_dealer, store, state_dir)
        server = CollectorServer(store, listen, CollectorSettings(listen=listen, db=db_url))
        port = await server.start()
        host = listen.rpartition(":")[0]
        agent = build_agent(
            AgentConfig(
                collector=f"{host}:{port}",
                token=token,
                interval_s=interval_s,
                spool_path=state_dir / "agent-spool.db",
            )
        )
        running = asyncio.create_task(agent.run())
        logger.info(
            "DealerPulse is up: collector on %s:%s storing into %s; local agent every %ss. "
            "Run `dealerpulse status` to see what arrives; Ctrl-C stops.",
            host,
            port,
            redact_url(db_url),
            interval_s,
        )
        stopped = asyncio.create_task(stop.wait())
        await asyncio.wait({running, stopped}, return_when=asyncio.FIRST_COMPLETED)
        agent.stop()
        await running
        stopped.cancel()
        await server.stop(10.0)
    finally:
        await asyncio.to_thread(store.close)
