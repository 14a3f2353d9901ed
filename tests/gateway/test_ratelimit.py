"""Per-client rate limiting: 429 with the IETF draft headers, driven by a FakeClock."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from dealerpulse.clock import FakeClock
from reporter.http.ratelimit import FixedWindowRateLimiter

from .conftest import AppFactory
from .harness import ACME, Client, Tokens, served

PATH = f"/api/ai/performance-monitoring?dealerId={ACME}"


def test_the_limit_answers_429_with_headers_until_the_window_ends(
    make_app: AppFactory, tokens: Tokens, clock: FakeClock
) -> None:
    with served(make_app(rate_limit_requests=3, rate_limit_window_s=60.0)) as port:
        acme = Client(port, tokens.acme)
        remaining = []
        for _ in range(3):
            answer = acme.get(PATH)
            assert answer.status == 200
            assert answer.headers["ratelimit-limit"] == "3"
            assert answer.headers["ratelimit-policy"] == "3;w=60"
            remaining.append(answer.headers["ratelimit-remaining"])
        assert remaining == ["2", "1", "0"]

        refused = acme.get(PATH)
        assert refused.status == 429
        assert refused.error_code == "rate_limited"
        assert refused.headers["retry-after"] == "60"
        assert refused.headers["ratelimit-reset"] == "60"
        assert refused.headers["ratelimit-remaining"] == "0"

        # Another client has its own budget; static files and /metrics are not counted.
        assert Client(port, tokens.zenith).get("/api/dealers").status == 200
        scraper = Client(port, tokens.admin)
        for _ in range(5):
            assert scraper.get("/metrics").status == 200
            assert acme.get("/").status == 200
            assert acme.get("/dashboard/app.js").status == 200

        clock.advance(45)
        later = acme.get(PATH)
        assert later.status == 429
        assert later.headers["retry-after"] == "15"
        clock.advance(15)
        again = acme.get(PATH)
        assert again.status == 200
        assert again.headers["ratelimit-remaining"] == "2"


def test_requests_without_a_token_are_counted_by_address(
    make_app: AppFactory, clock: FakeClock
) -> None:
    with served(make_app(rate_limit_requests=2, rate_limit_window_s=900.0)) as port:
        anonymous = Client(port)
        assert [anonymous.get("/api/dealers").status for _ in range(3)] == [401, 401, 429]
        assert anonymous.get("/api/dealers").headers["retry-after"] == "900"


def test_memory_is_bounded_by_max_clients() -> None:
    clock = FakeClock()
    limiter = FixedWindowRateLimiter(5, 60.0, clock, max_clients=100)
    for i in range(1000):
        limiter.hit(f"client-{i}")
    assert len(limiter) == 100
    # The most recent clients are remembered with their counts.
    assert limiter.hit("client-999").remaining == 3


@given(
    limit=st.integers(1, 20),
    window_s=st.floats(1.0, 1000.0),
    steps=st.lists(st.floats(0.0, 50.0), min_size=1, max_size=200),
)
def test_never_more_than_limit_in_one_window(
    limit: int, window_s: float, steps: list[float]
) -> None:
    clock = FakeClock()
    limiter = FixedWindowRateLimiter(limit, window_s, clock)
    used, window_start = 0, None
    for step in steps:
        clock.advance(step)
        now = clock.monotonic()
        if window_start is None or now >= window_start + window_s:
            window_start, used = now, 0
        decision = limiter.hit("c")
        assert decision.allowed == (used < limit)
        used += decision.allowed
        assert used <= limit
        assert decision.remaining == limit - used
        assert 1 <= decision.reset_s <= math.ceil(window_s)
        assert ("Retry-After" in decision.headers()) == (not decision.allowed)
