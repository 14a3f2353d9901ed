"""Updates of an agent's row outside the ingest writer, written only when they change it.

Why: in WAL mode a SQLite connection empties its page cache whenever another
connection has committed a change, and the ingest writer's cache holds its hot
set (up to 64 MiB). Every reconnect of an agent used to commit twice outside the
writer: its Hello (``last_seen``) and the first clock offset of the stream.
Under the soak (200 agents, a reconnect every 0.5 s) that emptied the writer's
cache four times a second, and the collector's RSS swung by 60-70 MiB with it.

SQLite leaves a page alone when an UPDATE writes the values it already holds,
and a transaction that changed no page commits nothing the other connections
notice. So these updates keep what is already right: the Hello's hostname,
version and boot id are written as they are (unchanged: nothing to commit),
``last_seen`` moves only when it is older than :data:`LAST_SEEN_RESOLUTION`
(the writer moves it with every batch), and a clock offset is recorded only
when it moved by :data:`CLOCK_OFFSET_RESOLUTION_MS` or more (the estimate
includes the delivery delay, whose jitter is of that order; what the offset is
for is a clock that is minutes or hours off, see the 10-minute ``max_future_s``).
A stream's first estimate, one batch that is often a replayed one from the
agent's spool, is recorded only for an agent with no offset yet
(collector/ingest/clock_offset.py): after every reconnect it read seconds
behind, the next window's estimate moved it back, and both were commits.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Update, case, func, literal, or_, update

from collector.abc import AgentInfo
from collector.store.schema import UtcDateTime, agents

# How stale last_seen may get before a Hello moves it (the writer moves it with every batch).
LAST_SEEN_RESOLUTION = timedelta(seconds=60)
# The clock offset is an estimate: created - received, so it includes the delivery delay.
CLOCK_OFFSET_RESOLUTION_MS = 500


def hello_update(agent: AgentInfo, now: datetime) -> Update:
    """What a Hello says about the agent; ``last_seen`` only when it is stale."""
    stale = or_(agents.c.last_seen.is_(None), agents.c.last_seen < now - LAST_SEEN_RESOLUTION)
    return (
        update(agents)
        .where(agents.c.agent_id == agent.agent_id)
        .values(
            hostname=agent.hostname,
            version=agent.version,
            boot_id=agent.boot_id,
            # Typed, so that any aware time is stored as UTC (a bare datetime would not be).
            last_seen=case((stale, literal(now, UtcDateTime())), else_=agents.c.last_seen),
        )
    )


def clock_offset_update(
    dealer_id: str, agent_id: str, offset_ms: int, *, if_unknown: bool = False
) -> Update:
    """The new offset, unless the recorded one is within the resolution of it.

    ``if_unknown``: only where no offset is recorded. Only the dealer's own
    agent: no row of another dealer is touched.
    """
    unknown = agents.c.clock_offset_ms.is_(None)
    moved = or_(
        unknown, func.abs(agents.c.clock_offset_ms - offset_ms) >= CLOCK_OFFSET_RESOLUTION_MS
    )
    return (
        update(agents)
        .where(
            agents.c.agent_id == agent_id,
            agents.c.dealer_id == dealer_id,
            unknown if if_unknown else moved,
        )
        .values(clock_offset_ms=offset_ms)
    )
