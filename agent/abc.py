"""Interfaces of the agent, by role."""

from __future__ import annotations

from abc import ABC, abstractmethod

from dealerpulse.model import EndpointStat, Sample


class Source(ABC):
    """Something the agent samples once per interval."""

    name: str

    @abstractmethod
    def collect(self, now_ms: int) -> list[Sample]:
        """The samples for this instant (all stamped now_ms). Must not block for long."""


class EndpointSource(ABC):
    """Something that yields per-endpoint API statistics once per interval."""

    name: str

    @abstractmethod
    def drain(self, now_ms: int) -> list[EndpointStat]:
        """Statistics aggregated since the previous call."""
