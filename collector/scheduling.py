"""What every group of APScheduler jobs in the collector does the same way."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

from apscheduler.schedulers.asyncio import AsyncIOScheduler

logger = logging.getLogger(__name__)


async def shut_down(
    scheduler: AsyncIOScheduler | None,
    running: Sequence[asyncio.Lock],
    timeout_s: float,
    what: str,
) -> bool:
    """Stop scheduling, then wait up to ``timeout_s`` for jobs that hold ``running``.

    True when none is left. A job still running is left to finish on its own:
    callers only use this where a job cut short is safe (its transaction
    rolls back, or its work is idempotent).
    """
    if scheduler is None:
        return True
    scheduler.shutdown(wait=False)

    async def settle() -> None:
        async with contextlib.AsyncExitStack() as held:
            for lock in running:
                await held.enter_async_context(lock)

    try:
        await asyncio.wait_for(settle(), timeout_s)
    except TimeoutError:
        logger.warning("%s still runs after %.0f s; leaving it", what, timeout_s)
        return False
    return True
