"""Who is calling: dealer tokens from the ``authorization`` metadata.

A token names its dealer in clear (``dp1.<dealer_id>.<secret>``), so checking
it costs one ``store.token_hashes(dealer_id)`` lookup. Verdicts are cached
briefly (keyed by the token's hash, never the token) so that a busy stream does
not query per batch, while a revoked token stops working within the TTL.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Iterable
from dataclasses import dataclass

from collector.abc import MetricStore, StoreError
from collector.ingest.errors import IngestError, StoreUnavailable
from dealerpulse.clock import Clock
from dealerpulse.tokens import TokenError, hash_token, parse_token, redact

logger = logging.getLogger(__name__)

AUTH_METADATA_KEY = "authorization"
BEARER_PREFIX = "bearer "


class NotAuthenticated(IngestError):
    """Missing, malformed, wrong or revoked token. The message never holds the token."""


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller: the dealer its token belongs to."""

    dealer_id: str
    token_hash: str


class TokenAuthenticator:
    def __init__(
        self, store: MetricStore, clock: Clock, ttl_s: float = 10.0, max_entries: int = 10_000
    ) -> None:
        self._store = store
        self._clock = clock
        self._ttl_s = ttl_s
        self._max_entries = max_entries
        # token hash -> (dealer id, monotonic expiry)
        self._valid: dict[str, tuple[str, float]] = {}

    async def authenticate(self, metadata: Iterable[tuple[str, str | bytes]] | None) -> Principal:
        """The caller behind the metadata. Raises NotAuthenticated or StoreUnavailable."""
        token = bearer_token(metadata)
        try:
            dealer_id = parse_token(token).dealer_id
        except TokenError as exc:
            raise NotAuthenticated(f"malformed token: {exc}") from None
        principal = Principal(dealer_id, hash_token(token))
        if not await self._still_valid(principal):
            logger.info("refused token %s: no such valid token", redact(token))
            raise NotAuthenticated(f"token for dealer {dealer_id!r} is not valid")
        return principal

    async def recheck(self, principal: Principal) -> None:
        """Raise NotAuthenticated once the principal's token was revoked (cached for the TTL)."""
        if not await self._still_valid(principal):
            logger.info("token of dealer %s was revoked during a stream", principal.dealer_id)
            raise NotAuthenticated(f"token for dealer {principal.dealer_id!r} was revoked")

    async def _still_valid(self, principal: Principal) -> bool:
        now = self._clock.monotonic()
        cached = self._valid.get(principal.token_hash)
        if cached is not None and cached[1] > now and cached[0] == principal.dealer_id:
            return True
        try:
            hashes = await asyncio.to_thread(self._store.token_hashes, principal.dealer_id)
        except StoreError as exc:
            raise StoreUnavailable(f"cannot check the token now: {exc}") from exc
        # Compare against every hash (no early exit) to keep timing uniform.
        matches = [hmac.compare_digest(principal.token_hash, stored) for stored in hashes]
        if not any(matches):
            self._valid.pop(principal.token_hash, None)
            return False
        self._remember(principal, now + self._ttl_s)
        return True

    def _remember(self, principal: Principal, expires: float) -> None:
        if len(self._valid) >= self._max_entries:
            now = self._clock.monotonic()
            self._valid = {k: v for k, v in self._valid.items() if v[1] > now}
            while len(self._valid) >= self._max_entries:
                del self._valid[next(iter(self._valid))]  # oldest first
        self._valid[principal.token_hash] = (principal.dealer_id, expires)


def bearer_token(metadata: Iterable[tuple[str, str | bytes]] | None) -> str:
    values = [value for key, value in metadata or () if key.lower() == AUTH_METADATA_KEY]
    if not values:
        raise NotAuthenticated("missing 'authorization: Bearer <token>' metadata")
    if len(values) > 1:
        raise NotAuthenticated("more than one 'authorization' metadata entry")
    value = values[0]
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    if not text.lower().startswith(BEARER_PREFIX) or not text[len(BEARER_PREFIX) :].strip():
        raise NotAuthenticated("'authorization' metadata must be 'Bearer <token>'")
    return text[len(BEARER_PREFIX) :].strip()


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
