"""The agent's exceptions: one base class, one subclass per concern.

Foreign errors (sqlite3, protobuf, grpc) are wrapped with ``raise ... from exc``
so callers only need to know these.
"""

from __future__ import annotations


class AgentError(Exception):
    """Base of every error the agent raises on purpose."""


class CodecError(AgentError):
    """A batch or reply that cannot be encoded or decoded; names the field."""


class SpoolError(AgentError):
    """The on-disk spool cannot be opened, read or written."""


class SpoolBusy(SpoolError):
    """Another agent process holds the spool file."""


class ShipperError(AgentError):
    """The collector could not be reached or refused the agent."""
