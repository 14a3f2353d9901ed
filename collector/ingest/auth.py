"""Ingest's view of authentication: :mod:`collector.auth` plus the dealer directory.

Token checking, roles and the cache live in :mod:`collector.auth` (shared by
every service); the names are re-exported here for the ingest modules.
"""

from __future__ import annotations

import asyncio
import logging

from collector.abc import MetricStore, StoreError
from collector.auth import (
    AUTH_METADATA_KEY,
    BEARER_PREFIX,
    Authenticator,
    NotAuthenticated,
    Principal,
    Role,
    bearer_token,
)
from collector.ingest.errors import StoreUnavailable
from dealerpulse.clock import Clock

logger = logging.getLogger(__name__)

# The name ingest used before roles existed.
TokenAuthenticator = Authenticator

__all__ = [
    "AUTH_METADATA_KEY",
    "BEARER_PREFIX",
    "Authenticator",
    "DealerDirectory",
    "NotAuthenticated",
    "Principal",
    "Role",
    "TokenAuthenticator",
    "bearer_token",
]


class DealerDirectory:
    """Which dealers exist, with their names; cached briefly like tokens."""

    def __init__(self, store: MetricStore, clock: Clock, ttl_s: float = 10.0) -> None:
        self._store = store
        self._clock = clock
        self._ttl_s = ttl_s
        # dealer id -> (name or None when unknown, monotonic expiry)
        self._known: dict[str, tuple[str | None, float]] = {}

    async def name_of(self, dealer_id: str) -> str | None:
        """The dealer's display name, or None when no such dealer is registered."""
        now = self._clock.monotonic()
        cached = self._known.get(dealer_id)
        if cached is not None and cached[1] > now:
            return cached[0]
        try:
            dealer = await asyncio.to_thread(self._store.get_dealer, dealer_id)
        except StoreError as exc:
            raise StoreUnavailable(f"cannot look up dealer {dealer_id!r} now: {exc}") from exc
        name = dealer.name if dealer is not None else None
        if len(self._known) >= 10_000:
            self._known.clear()  # a crude bound; lookups only happen off the hot path
        self._known[dealer_id] = (name, now + self._ttl_s)
        return name
