"""How long to wait before reconnecting: bounded, jittered, and the server's hint first."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    # Only a type here: the shipper imports random when it first backs off.
    import random


@dataclass(frozen=True, slots=True)
class BackoffPolicy:
    initial_s: float = 0.5
    max_s: float = 30.0
    multiplier: float = 2.0
    # Each delay is spread by +-jitter (a fraction) so that agents cut off by
    # the same collector restart do not all come back in the same instant.
    jitter: float = 0.2
    # A refused token or a server that is not a collector will not fix itself
    # soon: retry slowly, since the operator may fix it without restarting us.
    slow_s: float = 60.0
    # A server hint beyond this is treated as a mistake, not obeyed.
    max_hint_s: float = 600.0

    def __post_init__(self) -> None:
        if not 0 < self.initial_s <= self.max_s:
            raise ValueError(f"backoff needs 0 < initial_s <= max_s, got {self}")
        if self.multiplier < 1 or not 0 <= self.jitter < 1 or self.slow_s <= 0:
            raise ValueError(f"backoff needs multiplier >= 1, 0 <= jitter < 1, got {self}")

    def delay(
        self,
        attempt: int,
        rng: random.Random,
        hint_s: float | None = None,
        slow: bool = False,
    ) -> float:
        """Seconds to wait before attempt number ``attempt`` (0 = first retry).

        A server hint wins over the exponential schedule, and the wait never
        comes in below it: jitter only adds to a hint.
        """
        if hint_s is not None:
            base = min(max(hint_s, 0.0), self.max_hint_s)
            return max(base, self.slow_s if slow else 0.0) * (1 + self.jitter * rng.random())
        if slow:
            base = self.slow_s
        else:
            base = min(self.max_s, self.initial_s * self.multiplier ** min(attempt, 64))
        return base * (1 + self.jitter * (2 * rng.random() - 1))
