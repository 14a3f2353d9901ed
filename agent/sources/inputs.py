"""What the host source reads from the OS, as plain values, and the psutil reader.

In the manner of prometheus/client_python, the host source takes these
readings as an argument: tests feed fixture objects, production passes
:class:`PsutilInputs`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import psutil

# Link speed and flags change when a cable or a NIC does, not from one interval
# to the next, yet psutil reads them with a socket and several ioctls per NIC:
# 0.26 ms of the 2.0 ms a collection costs here (4 NICs). Re-read once a minute.
NIC_STATS_MAX_AGE_S = 60.0


@dataclass(frozen=True, slots=True)
class Memory:
    percent: float
    used: int
    available: int
    total: int


@dataclass(frozen=True, slots=True)
class Swap:
    percent: float
    used: int
    free: int
    total: int


@dataclass(frozen=True, slots=True)
class Partition:
    device: str
    mountpoint: str
    fstype: str


@dataclass(frozen=True, slots=True)
class DiskUsage:
    total: int
    used: int
    free: int
    percent: float


@dataclass(frozen=True, slots=True)
class DiskIo:
    """Cumulative counters since boot."""

    read_bytes: int
    write_bytes: int
    read_count: int
    write_count: int


@dataclass(frozen=True, slots=True)
class NetIo:
    """Cumulative counters since boot."""

    bytes_sent: int
    bytes_recv: int


@dataclass(frozen=True, slots=True)
class NicStats:
    isup: bool
    speed_mbps: int
    loopback: bool = False


class HostInputs(Protocol):
    """The OS readings the host source needs; every call is cheap and non-blocking."""

    def cpu_percent(self) -> float:
        """Total CPU busy % since the previous call."""
        ...

    def cpu_percent_per_core(self) -> Sequence[float]:
        """Busy % per logical core since the previous call."""
        ...

    def load_average(self) -> tuple[float, float, float]: ...

    def virtual_memory(self) -> Memory: ...

    def swap_memory(self) -> Swap: ...

    def disk_partitions(self) -> Sequence[Partition]: ...

    def disk_usage(self, mountpoint: str) -> DiskUsage: ...

    def disk_io_per_disk(self) -> Mapping[str, DiskIo]: ...

    def disk_io_total(self) -> DiskIo | None:
        """Host total without double counting partitions; None if there are no disks."""
        ...

    def net_io_per_nic(self) -> Mapping[str, NetIo]: ...

    def net_if_stats(self) -> Mapping[str, NicStats]:
        """Link flags and speed; may be up to NIC_STATS_MAX_AGE_S old."""
        ...

    def boot_time(self) -> float:
        """Seconds since the Unix epoch."""
        ...

    def pids(self) -> Sequence[int]: ...


class _DiskCounters(Protocol):
    @property
    def read_bytes(self) -> int: ...
    @property
    def write_bytes(self) -> int: ...
    @property
    def read_count(self) -> int: ...
    @property
    def write_count(self) -> int: ...


class PsutilInputs:
    """HostInputs read through psutil."""

    def __init__(
        self,
        nic_stats_max_age_s: float = NIC_STATS_MAX_AGE_S,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        # psutil's cpu_percent(interval=None) measures since its previous call;
        # prime both counters so the first interval reports a real figure.
        psutil.cpu_percent(interval=None)
        psutil.cpu_percent(interval=None, percpu=True)
        self._nic_stats_max_age_s = nic_stats_max_age_s
        self._monotonic = monotonic
        self._nic_stats: Mapping[str, NicStats] = {}
        self._nic_stats_read_at: float | None = None

    def cpu_percent(self) -> float:
        return float(psutil.cpu_percent(interval=None))

    def cpu_percent_per_core(self) -> Sequence[float]:
        return [float(v) for v in psutil.cpu_percent(interval=None, percpu=True)]

    def load_average(self) -> tuple[float, float, float]:
        one, five, fifteen = psutil.getloadavg()
        return float(one), float(five), float(fifteen)

    def virtual_memory(self) -> Memory:
        vm = psutil.virtual_memory()
        return Memory(vm.percent, vm.used, vm.available, vm.total)

    def swap_memory(self) -> Swap:
        sw = psutil.swap_memory()
        return Swap(sw.percent, sw.used, sw.free, sw.total)

    def disk_partitions(self) -> Sequence[Partition]:
        return [Partition(p.device, p.mountpoint, p.fstype) for p in psutil.disk_partitions()]

    def disk_usage(self, mountpoint: str) -> DiskUsage:
        du = psutil.disk_usage(mountpoint)
        return DiskUsage(du.total, du.used, du.free, du.percent)

    def disk_io_per_disk(self) -> Mapping[str, DiskIo]:
        counters = psutil.disk_io_counters(perdisk=True) or {}
        return {name: _disk_io(c) for name, c in counters.items()}

    def disk_io_total(self) -> DiskIo | None:
        total = psutil.disk_io_counters(perdisk=False)
        return None if total is None else _disk_io(total)

    def net_io_per_nic(self) -> Mapping[str, NetIo]:
        counters = psutil.net_io_counters(pernic=True) or {}
        return {nic: NetIo(c.bytes_sent, c.bytes_recv) for nic, c in counters.items()}

    def net_if_stats(self) -> Mapping[str, NicStats]:
        """Read at most every nic_stats_max_age_s (see NIC_STATS_MAX_AGE_S)."""
        now = self._monotonic()
        read_at = self._nic_stats_read_at
        if read_at is None or not 0 <= now - read_at < self._nic_stats_max_age_s:
            self._nic_stats = {
                nic: NicStats(s.isup, s.speed, "loopback" in getattr(s, "flags", ""))
                for nic, s in psutil.net_if_stats().items()
            }
            self._nic_stats_read_at = now
        return self._nic_stats

    def boot_time(self) -> float:
        return float(psutil.boot_time())

    def pids(self) -> Sequence[int]:
        return psutil.pids()


def _disk_io(counters: _DiskCounters) -> DiskIo:
    return DiskIo(
        counters.read_bytes, counters.write_bytes, counters.read_count, counters.write_count
    )
