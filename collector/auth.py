"""Who is calling, and what they may do: tokens -> :class:`Principal`.

Every RPC of the collector (Ingest, OTLP, Alerts) and of the reporter sends
``authorization: Bearer <token>``. Three roles:

- ``dealer`` -- the token its agents write with (``dp1.<dealer_id>.<secret>``);
  reads and changes that dealer's data, nothing of any other dealer;
- ``viewer`` -- same form, stored with role viewer: reads that dealer's data,
  writes nothing (no batches, no acknowledging, silencing or rule changes);
- ``admin`` -- ``dp1-admin.<secret>``: reads and manages every dealer, but names
  no dealer and so never writes metrics.

A dealer or viewer token names its dealer in clear, so checking it costs one
lookup of that dealer's valid token hashes. Verdicts are cached for ``ttl_s``
(keyed by the token's hash, never the token), so a busy stream does not query
per batch, and a revoked token stops working within the TTL; open streams ask
:meth:`Authenticator.recheck` per batch.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import TypeVar

from collector.abc import MetricStore, StoreError
from collector.ingest.errors import IngestError, StoreUnavailable
from dealerpulse.clock import Clock
from dealerpulse.tokens import TokenError, hash_token, parse_token, redact

logger = logging.getLogger(__name__)

AUTH_METADATA_KEY = "authorization"
BEARER_PREFIX = "bearer "
Metadata = Iterable[tuple[str, str | bytes]] | None
_T = TypeVar("_T")


class NotAuthenticated(IngestError):
    """Missing, malformed, wrong or revoked token. The message never holds the token."""


class Role(StrEnum):
    ADMIN = "admin"
    DEALER = "dealer"
    VIEWER = "viewer"


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller. ``dealer_id`` is None for an admin."""

    role: Role
    dealer_id: str | None
    token_hash: str

    @property
    def name(self) -> str:
        """How logs and ``acknowledged_by`` name the caller (never the token)."""
        if self.role is Role.ADMIN:
            return "admin"
        suffix = " (viewer)" if self.role is Role.VIEWER else ""
        return f"{self.dealer_id}{suffix}"

    def may_read(self, dealer_id: str | None) -> bool:
        """Read ``dealer_id``'s data (None: objects that apply to every dealer)."""
        return self.role is Role.ADMIN or (dealer_id is not None and dealer_id == self.dealer_id)

    def may_write(self, dealer_id: str | None) -> bool:
        """Change ``dealer_id``'s data: write batches, acknowledge, silence, edit rules."""
        if self.role is Role.ADMIN:
            return True
        return self.role is Role.DEALER and dealer_id is not None and dealer_id == self.dealer_id

    def may_manage(self) -> bool:
        """Operations across dealers: rules for every dealer, dealers and tokens."""
        return self.role is Role.ADMIN

    def may_ingest(self) -> bool:
        """Send metrics: only a dealer token (admin tokens name no dealer)."""
        return self.role is Role.DEALER and self.dealer_id is not None


class Authenticator:
    """Tokens to principals, checked against the store and cached for ``ttl_s``."""

    def __init__(
        self, store: MetricStore, clock: Clock, ttl_s: float = 10.0, max_entries: int = 10_000
    ) -> None:
        self._store = store
        self._clock = clock
        self._ttl_s = ttl_s
        self._max_entries = max_entries
        # token hash -> (principal, monotonic expiry)
        self._valid: dict[str, tuple[Principal, float]] = {}
        # valid admin token hashes, monotonic expiry
        self._admins: tuple[list[str], float] | None = None

    async def authenticate(self, metadata: Metadata) -> Principal:
        """The caller behind the metadata. Raises NotAuthenticated or StoreUnavailable."""
        token = bearer_token(metadata)
        token_hash = hash_token(token)
        cached = self._cached(token_hash)
        if cached is not None:
            return cached
        try:
            dealer_id: str | None = parse_token(token).dealer_id
        except TokenError:
            dealer_id = None  # not a dealer or viewer token: maybe an admin token
        if dealer_id is None:
            principal = await self._admin(token_hash)
        else:
            principal = await self._dealer_principal(dealer_id, token_hash)
        if principal is None:
            logger.info("refused token %s: no such valid token", redact(token))
            raise NotAuthenticated(_invalid_message(token))
        self._remember(principal)
        return principal

    async def recheck(self, principal: Principal) -> None:
        """Raise NotAuthenticated once the principal's token was revoked (cached for the TTL)."""
        if self._cached(principal.token_hash) is not None:
            return
        if principal.role is Role.ADMIN:
            current = await self._admin(principal.token_hash)
        else:
            assert principal.dealer_id is not None  # dealer and viewer tokens name one
            current = await self._dealer_principal(principal.dealer_id, principal.token_hash)
        if current != principal:
            logger.info("token of %s was revoked during a stream", principal.name)
            raise NotAuthenticated(f"token of {principal.name} was revoked")
        self._remember(current)

    # ---- lookups

    def _cached(self, token_hash: str) -> Principal | None:
        entry = self._valid.get(token_hash)
        if entry is None or entry[1] <= self._clock.monotonic():
            return None
        return entry[0]

    async def _dealer_principal(self, dealer_id: str, token_hash: str) -> Principal | None:
        roles = await self._lookup(_token_roles, dealer_id)
        role = _matching(token_hash, roles)
        if role is None:
            self._valid.pop(token_hash, None)
            return None
        return Principal(Role(role), dealer_id, token_hash)

    async def _admin(self, token_hash: str) -> Principal | None:
        hashes = await self._admin_hashes()
        if _matching(token_hash, dict.fromkeys(hashes, Role.ADMIN.value)) is None:
            self._valid.pop(token_hash, None)
            return None
        return Principal(Role.ADMIN, None, token_hash)

    async def _admin_hashes(self) -> list[str]:
        # Cached as a whole: a flood of garbage tokens costs one query per TTL.
        now = self._clock.monotonic()
        if self._admins is None or self._admins[1] <= now:
            self._admins = (await self._lookup(_admin_hashes), now + self._ttl_s)
        return self._admins[0]

    async def _lookup(self, query: Callable[..., _T], *args: str) -> _T:
        try:
            return await asyncio.to_thread(query, self._store, *args)
        except StoreError as exc:
            raise StoreUnavailable(f"cannot check the token now: {exc}") from exc

    def _remember(self, principal: Principal) -> None:
        now = self._clock.monotonic()
        if len(self._valid) >= self._max_entries:
            self._valid = {k: v for k, v in self._valid.items() if v[1] > now}
            while len(self._valid) >= self._max_entries:
                del self._valid[next(iter(self._valid))]  # oldest first
        self._valid[principal.token_hash] = (principal, now + self._ttl_s)


def _token_roles(store: MetricStore, dealer_id: str) -> dict[str, str]:
    """Valid token hashes of the dealer -> role; stores without roles know dealer tokens."""
    roles = getattr(store, "token_roles", None)
    if roles is not None:
        found: dict[str, str] = roles(dealer_id)
        return found
    return dict.fromkeys(store.token_hashes(dealer_id), Role.DEALER.value)


def _admin_hashes(store: MetricStore) -> list[str]:
    admin = getattr(store, "admin_token_hashes", None)
    return [] if admin is None else list(admin())


def _matching(token_hash: str, roles: dict[str, str]) -> str | None:
    """The role of ``token_hash`` among the stored ones, compared in constant time."""
    found = None
    # Compare against every hash (no early exit) to keep timing uniform.
    for stored, role in roles.items():
        if hmac.compare_digest(token_hash, stored):
            found = role
    return found


def _invalid_message(token: str) -> str:
    try:
        return f"token for dealer {parse_token(token).dealer_id!r} is not valid"
    except TokenError:
        return "token is neither a valid admin token nor a dealer token (dp1.<dealer_id>.<secret>)"


def bearer_token(metadata: Metadata) -> str:
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
