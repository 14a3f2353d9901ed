from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dealerpulse import logs, tokens


def test_token_round_trip_and_hash() -> None:
    token = tokens.new_token("sunrise-motors")
    parsed = tokens.parse_token(token)
    assert parsed.dealer_id == "sunrise-motors"
    assert tokens.token_matches(token, tokens.hash_token(token))
    assert not tokens.token_matches(token + "x", tokens.hash_token(token))
    assert token not in tokens.redact(token)


def test_slugify() -> None:
    assert tokens.slugify("Sunrise Motors") == "sunrise-motors"
    assert tokens.slugify("  A&B  Cars, Inc. ") == "a-b-cars-inc"
    with pytest.raises(ValueError):
        tokens.slugify("!!!")


@given(st.text())
def test_parse_token_never_crashes(raw: str) -> None:
    with contextlib.suppress(tokens.TokenError):
        tokens.parse_token(raw)


def test_logs_scrub_tokens() -> None:
    token = tokens.new_token("d1")
    assert token not in logs.scrub(f"connect failed with {token} oops")
    assert "dp1.d1.***" in logs.scrub(f"token={token}")
