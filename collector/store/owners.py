"""Which dealer owns each agent, as far as committed rows have shown.

An agent belongs to one dealer for good (a batch claiming it for another is
refused) and its row is never deleted, so once a committed transaction has
seen the owner, later groups need neither the insert-if-missing nor the
lookup: two round trips per group on PostgreSQL, where they were a tenth of
the writer's time in bench.influx.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping

# Far more agents than one collector serves; past it the cache starts over,
# which costs one lookup per agent again, not correctness.
MAX_CACHED_OWNERS = 200_000


class AgentOwners:
    """agent id -> dealer id of committed agent rows; safe to share between writer threads."""

    def __init__(self, max_agents: int = MAX_CACHED_OWNERS) -> None:
        self._max_agents = max_agents
        self._owners: dict[str, str] = {}
        self._lock = threading.Lock()

    def get(self, agent_id: str) -> str | None:
        return self._owners.get(agent_id)

    def remember(self, owners: Mapping[str, str]) -> None:
        """Call only after the transaction that read or wrote these rows committed."""
        if not owners:
            return
        with self._lock:
            if len(self._owners) + len(owners) > self._max_agents:
                self._owners = {}
            self._owners.update(owners)
