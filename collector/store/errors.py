"""The store's errors, under :class:`collector.abc.StoreError`.

Callers (the ingest writer) treat every StoreError as "nothing of this group
was committed"; :class:`StoreUnavailable` additionally says that retrying
later may succeed.
"""

from __future__ import annotations

from collector.abc import StoreError


class StoreUnavailable(StoreError):
    """The database cannot be reached, the connection was lost, or it stayed locked."""


class StoreWriteError(StoreError):
    """The database refused a write (constraint, type or schema problem)."""


class AgentConflict(StoreError):
    """The agent id is registered to another dealer."""


class MigrationError(StoreError):
    """The schema could not be brought to the newest version."""
