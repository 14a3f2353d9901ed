"""Per-client rate limiting of the API: fixed windows, bounded memory, an injected clock.

A client (its token's hash, else its IP address) may make ``limit`` requests
in a window of ``window_s`` seconds that starts with its first request; the
window then starts afresh. Fixed windows are simple and cheap (one counter per
client); their known weakness is a burst of up to 2 x limit around a window
boundary, acceptable for the seed's 100 requests per 15 minutes.

Answers carry the headers of the IETF draft "RateLimit header fields for
HTTP" (draft-ietf-httpapi-ratelimit-headers, delta-seconds variant):
``RateLimit-Limit``, ``RateLimit-Remaining``, ``RateLimit-Reset`` (seconds
until the window ends), ``RateLimit-Policy`` (``100;w=900``), and a refused
request also ``Retry-After`` (seconds).

Memory: at most ``max_clients`` counters. When full, expired windows are
dropped first, then the least recently seen clients (whose count starts over:
the bound on memory wins over exactness for a flood of distinct clients).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass

from dealerpulse.clock import Clock


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    reset_s: int
    window_s: float

    def headers(self) -> dict[str, str]:
        found = {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset_s),
            "RateLimit-Policy": f"{self.limit};w={math.ceil(self.window_s)}",
        }
        if not self.allowed:
            found["Retry-After"] = str(self.reset_s)
        return found


class FixedWindowRateLimiter:
    def __init__(
        self, limit: int, window_s: float, clock: Clock, max_clients: int = 10_000
    ) -> None:
        if limit <= 0 or not math.isfinite(window_s) or window_s <= 0 or max_clients <= 0:
            raise ValueError(
                f"rate limit needs limit > 0, window_s > 0 and max_clients > 0, got "
                f"{limit}, {window_s}, {max_clients}"
            )
        self._limit = limit
        self._window_s = window_s
        self._clock = clock
        self._max_clients = max_clients
        # client key -> [window start (monotonic s), requests counted]; least recent first.
        self._windows: OrderedDict[str, list[float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._windows)

    def hit(self, client: str) -> Decision:
        """Count one request of ``client`` and say whether it may go ahead."""
        now = self._clock.monotonic()
        window = self._windows.get(client)
        if window is None or now >= window[0] + self._window_s:
            window = [now, 0.0]
            self._remember(client, window)
        else:
            self._windows.move_to_end(client)
        allowed = window[1] < self._limit
        if allowed:
            window[1] += 1
        return Decision(
            allowed=allowed,
            limit=self._limit,
            remaining=max(0, self._limit - int(window[1])),
            # At least 1: "0 seconds" would invite an immediate retry that is refused.
            # Rounded first: float noise must not turn 60 s into 61.
            reset_s=max(1, math.ceil(round(window[0] + self._window_s - now, 6))),
            window_s=self._window_s,
        )

    def _remember(self, client: str, window: list[float]) -> None:
        self._windows.pop(client, None)
        if len(self._windows) >= self._max_clients:
            now = self._clock.monotonic()
            expired = [k for k, w in self._windows.items() if now >= w[0] + self._window_s]
            for key in expired:
                del self._windows[key]
            while len(self._windows) >= self._max_clients:
                self._windows.popitem(last=False)
        self._windows[client] = window
