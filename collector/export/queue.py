"""A bounded, thread-safe queue that never blocks the producer: full means drop the OLDEST.

Why the oldest: an endpoint that was away for a while gets the freshest data
first when it comes back; dashboards and monitors at the other end look at
"now", and a stale point is worth less than a fresh one.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

T = TypeVar("T")


class DropOldestQueue(Generic[T]):
    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        self._capacity = capacity
        self._items: deque[T] = deque()
        self._lock = threading.Lock()
        self.dropped = 0

    def put_all(self, items: Iterable[T]) -> int:
        """Append without blocking; returns how many old items were dropped for room."""
        dropped = 0
        with self._lock:
            for item in items:
                if len(self._items) >= self._capacity:
                    self._items.popleft()
                    dropped += 1
                self._items.append(item)
            self.dropped += dropped
        return dropped

    def take(self, weigh: Callable[[T], int], max_weight: int) -> list[T]:
        """The oldest items up to max_weight (at least one if any is queued)."""
        taken: list[T] = []
        total = 0
        with self._lock:
            while self._items:
                weight = weigh(self._items[0])
                if taken and total + weight > max_weight:
                    break
                taken.append(self._items.popleft())
                total += weight
        return taken

    def clear(self) -> int:
        with self._lock:
            count = len(self._items)
            self._items.clear()
        return count

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)
