"""Dealer tokens: ``dp1.<dealer_id>.<secret>``.

The dealer id in clear lets an agent stamp its batches before it has ever
reached a collector, and lets the collector find the dealer without scanning
hashes. Only a SHA-256 of the whole token is stored: the secret is 256 random
bits, so a slow password hash would add cost without adding safety.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

PREFIX = "dp1"
DEALER_ID_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")


class TokenError(ValueError):
    """A token that is not of the form dp1.<dealer_id>.<secret>."""


@dataclass(frozen=True, slots=True)
class ParsedToken:
    dealer_id: str
    secret: str


def slugify(name: str) -> str:
    """A dealer id from a display name: "Sunrise Motors" -> "sunrise-motors"."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:64].strip("-")
    if not slug:
        raise ValueError(f"cannot derive a dealer id from name {name!r}; pass one explicitly")
    return slug


def validate_dealer_id(dealer_id: str) -> str:
    if not DEALER_ID_RE.match(dealer_id):
        raise ValueError(
            f"dealer id {dealer_id!r} must be 1-64 characters of a-z, 0-9 and '-', "
            "starting and ending with a letter or digit"
        )
    return dealer_id


# hashlib, hmac and secrets are imported where used: the agent only parses
# tokens, and hashlib would load libcrypto (megabytes of RSS) into it.


def new_token(dealer_id: str) -> str:
    import secrets

    validate_dealer_id(dealer_id)
    return f"{PREFIX}.{dealer_id}.{secrets.token_urlsafe(32)}"


ADMIN_PREFIX = "dp1-admin"


def new_admin_token() -> str:
    """A token for admin operations (rules for every dealer, dealer management).

    It names no dealer, so it can never write metrics through Ingest.
    """
    import secrets

    return f"{ADMIN_PREFIX}.{secrets.token_urlsafe(32)}"


def parse_token(token: str) -> ParsedToken:
    parts = token.strip().split(".", 2)
    if len(parts) != 3 or parts[0] != PREFIX or not parts[2]:
        raise TokenError("token is not a DealerPulse token (expected dp1.<dealer_id>.<secret>)")
    if not DEALER_ID_RE.match(parts[1]):
        raise TokenError("token names an invalid dealer id")
    return ParsedToken(dealer_id=parts[1], secret=parts[2])


def hash_token(token: str) -> str:
    import hashlib

    return hashlib.sha256(token.strip().encode()).hexdigest()


def token_matches(token: str, stored_hash: str) -> bool:
    import hmac

    return hmac.compare_digest(hash_token(token), stored_hash)


def redact(token: str) -> str:
    """What may appear in a log line instead of a token."""
    try:
        return f"{PREFIX}.{parse_token(token).dealer_id}.***"
    except TokenError:
        return "***"
