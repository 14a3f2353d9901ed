"""Who is calling the API: the same tokens as gRPC, in ``Authorization: Bearer <token>``.

Checking and caching are :class:`collector.auth.Authenticator`'s, shared with
every gRPC service; what a :class:`Principal` may read or change is decided
by its role (admin: every dealer; dealer: its own; viewer: reads its own).
"""

from __future__ import annotations

from starlette.requests import Request

from collector.abc import MetricStore
from collector.auth import AUTH_METADATA_KEY, Authenticator, NotAuthenticated, Principal, Role
from collector.ingest.errors import StoreUnavailable
from dealerpulse.clock import Clock
from dealerpulse.tokens import hash_token
from reporter.http.coalesce import Coalescer
from reporter.http.errors import Forbidden, Unauthenticated, Unavailable

__all__ = ["HttpAuth", "Principal", "client_key", "require_write", "scope_of"]


class HttpAuth:
    def __init__(self, store: MetricStore, clock: Clock, ttl_s: float = 10.0) -> None:
        self._auth = Authenticator(store, clock, ttl_s=ttl_s)
        # Concurrent requests with the same header share one check (keyed by its hash:
        # no token is kept in memory).
        self._checks: Coalescer[str, Principal] = Coalescer()

    async def caller(self, request: Request) -> Principal:
        """The caller, or Unauthenticated (401) / Unavailable (503)."""
        header = request.headers.get(AUTH_METADATA_KEY)
        metadata = [] if header is None else [(AUTH_METADATA_KEY, header)]
        try:
            if header is None:
                return await self._auth.authenticate(metadata)
            return await self._checks.run(
                hash_token(header), lambda: self._auth.authenticate(metadata)
            )
        except NotAuthenticated as exc:
            raise Unauthenticated(str(exc), {"WWW-Authenticate": "Bearer"}) from None
        except StoreUnavailable as exc:
            raise Unavailable(str(exc)) from None


def client_key(request: Request) -> str:
    """Whom the rate limit counts: the token's hash when one is sent, else the IP address.

    Only a hash is kept in memory, never the token.
    """
    header = request.headers.get(AUTH_METADATA_KEY, "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return "token:" + hash_token(token)[:32]
    host = request.client.host if request.client is not None else "unknown"
    return "ip:" + host


def scope_of(caller: Principal, requested: str | None) -> str | None:
    """The dealer a read is limited to: a dealer/viewer token's own, or what an admin asked.

    None means every dealer (admins only). Asking for another dealer is refused (403).
    """
    if caller.role is Role.ADMIN:
        return requested
    if requested is not None and requested != caller.dealer_id:
        raise Forbidden(f"the token of {caller.name} may not read dealer {requested!r}")
    return caller.dealer_id


def require_write(caller: Principal, dealer_id: str | None, what: str) -> None:
    """Refuse a change to ``dealer_id``'s objects (None: objects of every dealer)."""
    if caller.may_write(dealer_id):
        return
    if dealer_id is None:
        raise Forbidden(f"{what} for every dealer needs an admin token; set dealerId")
    if caller.role is Role.VIEWER and caller.may_read(dealer_id):
        raise Forbidden(f"a viewer token may not change {what}")
    raise Forbidden(f"the token of {caller.name} may not change dealer {dealer_id!r}")
