"""Host metrics: CPU, load, memory, swap, disks, network, processes, uptime.

Metrics (name, unit, labels):

================================  ================  ===========================
cpu.percent                       percent
cpu.core.percent                  percent           core="0".."n-1"
load.1m, load.5m, load.15m        count             (runnable tasks, averaged)
memory.percent                    percent
memory.used_bytes                 bytes
memory.available_bytes            bytes
memory.total_bytes                bytes
swap.percent                      percent
swap.used_bytes                   bytes
swap.free_bytes                   bytes
swap.total_bytes                  bytes
disk.used_percent                 percent           mount
disk.used_bytes                   bytes             mount
disk.free_bytes                   bytes             mount
disk.total_bytes                  bytes             mount
disk.read_bytes_per_s             bytes_per_second  device; no label = host total
disk.write_bytes_per_s            bytes_per_second  device; no label = host total
disk.read_ops_per_s               ops_per_second    device; no label = host total
disk.write_ops_per_s              ops_per_second    device; no label = host total
net.recv_bytes_per_s              bytes_per_second  nic
net.sent_bytes_per_s              bytes_per_second  nic
net.recv_percent                  percent           nic (of link speed, if known)
net.sent_percent                  percent           nic (of link speed, if known)
process.count                     count
host.uptime_s                     seconds
================================  ================  ===========================

Disk usage covers real mounts only: pseudo filesystems (proc, tmpfs, ...) and
read-only images (squashfs) are skipped, and so are network filesystems,
whose statvfs can hang for minutes when the server is gone. A device mounted
twice (bind mounts) is reported once, at its shortest mount point.

Rates come from counter deltas divided by the monotonic time between the two
readings. The first reading of a counter yields no rate, and neither does a
counter that went backwards (reset, wrap, device replaced): it restarts from
its new value. A failing reading skips its group for that interval only.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Hashable, Iterable, Mapping
from typing import TypeVar

from agent.abc import Source
from agent.sources.inputs import DiskIo, HostInputs, NicStats, Partition, PsutilInputs
from dealerpulse.clock import Clock, SystemClock
from dealerpulse.model import Sample, labels_of

logger = logging.getLogger(__name__)

PSEUDO_FILESYSTEMS = frozenset(
    {
        "autofs", "binfmt_misc", "bpf", "cgroup", "cgroup2", "configfs", "debugfs",
        "devpts", "devtmpfs", "efivarfs", "fuse.gvfsd-fuse", "fuse.lxcfs", "fusectl",
        "hugetlbfs", "mqueue", "nsfs", "proc", "pstore", "ramfs", "rpc_pipefs",
        "securityfs", "selinuxfs", "squashfs", "sysfs", "tmpfs", "tracefs", "iso9660",
    }
)  # fmt: skip
NETWORK_FILESYSTEMS = frozenset(
    {"nfs", "nfs4", "cifs", "smbfs", "smb3", "sshfs", "fuse.sshfs", "9p", "ceph", "glusterfs"}
)
# Whole-disk devices only; these are not disks a dealer cares about.
_IGNORED_DISK_PREFIXES = ("loop", "ram", "zram")

PERCENT = "percent"
BYTES = "bytes"
BYTES_PER_S = "bytes_per_second"
OPS_PER_S = "ops_per_second"
COUNT = "count"
SECONDS = "seconds"

_Key = TypeVar("_Key", bound=Hashable)


class CounterRates:
    """Turns cumulative counters into per-second rates, reading to reading."""

    def __init__(self) -> None:
        self._last: dict[Hashable, tuple[float, float]] = {}

    def update(self, readings: Mapping[_Key, float], now_s: float) -> dict[_Key, float]:
        """Rates for keys seen last time too; keys not read now are forgotten."""
        rates: dict[_Key, float] = {}
        current: dict[Hashable, tuple[float, float]] = {}
        for key, value in readings.items():
            current[key] = (value, now_s)
            previous = self._last.get(key)
            if previous is None:
                continue
            delta, elapsed = value - previous[0], now_s - previous[1]
            if delta >= 0 and elapsed > 0:
                rates[key] = delta / elapsed
        self._last = current
        return rates


class _Samples:
    def __init__(self, now_ms: int) -> None:
        self.now_ms = now_ms
        self.items: list[Sample] = []

    def add(self, name: str, value: float, unit: str, **labels: str) -> None:
        # NaN/inf would make the collector refuse the whole batch.
        if math.isfinite(value):
            self.items.append(Sample(name, float(value), unit, self.now_ms, labels_of(labels)))


class PsutilHostSource(Source):
    """Samples the host through ``inputs`` (psutil unless a test passes fixtures)."""

    name = "host"

    def __init__(self, inputs: HostInputs | None = None, clock: Clock | None = None) -> None:
        self._inputs = inputs if inputs is not None else PsutilInputs()
        self._clock = clock or SystemClock()
        self._disk_rates = CounterRates()
        self._net_rates = CounterRates()
        self._failing: set[str] = set()
        self._groups: tuple[tuple[str, Callable[[_Samples], None]], ...] = (
            ("cpu", self._cpu),
            ("load", self._load),
            ("memory", self._memory),
            ("swap", self._swap),
            ("disk usage", self._disk_usage),
            ("disk io", self._disk_io),
            ("network", self._network),
            ("processes", self._processes),
            ("uptime", self._uptime),
        )

    def collect(self, now_ms: int) -> list[Sample]:
        out = _Samples(now_ms)
        for group, read in self._groups:
            try:
                read(out)
            except Exception as exc:  # one broken reading must not cost the others
                self._report_failure(group, exc)
            else:
                self._failing.discard(group)
        return out.items

    def _report_failure(self, group: str, exc: Exception) -> None:
        # Warn once per outage, not every interval.
        level = logging.DEBUG if group in self._failing else logging.WARNING
        logger.log(level, "host source: reading %s failed: %r", group, exc)
        self._failing.add(group)

    # ---- groups

    def _cpu(self, out: _Samples) -> None:
        out.add("cpu.percent", self._inputs.cpu_percent(), PERCENT)
        for core, percent in enumerate(self._inputs.cpu_percent_per_core()):
            out.add("cpu.core.percent", percent, PERCENT, core=str(core))

    def _load(self, out: _Samples) -> None:
        for window, value in zip(("1m", "5m", "15m"), self._inputs.load_average(), strict=True):
            out.add(f"load.{window}", value, COUNT)

    def _memory(self, out: _Samples) -> None:
        memory = self._inputs.virtual_memory()
        out.add("memory.percent", memory.percent, PERCENT)
        out.add("memory.used_bytes", memory.used, BYTES)
        out.add("memory.available_bytes", memory.available, BYTES)
        out.add("memory.total_bytes", memory.total, BYTES)

    def _swap(self, out: _Samples) -> None:
        swap = self._inputs.swap_memory()
        out.add("swap.percent", swap.percent, PERCENT)
        out.add("swap.used_bytes", swap.used, BYTES)
        out.add("swap.free_bytes", swap.free, BYTES)
        out.add("swap.total_bytes", swap.total, BYTES)

    def _disk_usage(self, out: _Samples) -> None:
        for partition in real_mounts(self._inputs.disk_partitions()):
            try:
                usage = self._inputs.disk_usage(partition.mountpoint)
            except OSError as exc:  # unmounted meanwhile, no media, no permission
                logger.debug("host source: no usage for %s: %r", partition.mountpoint, exc)
                continue
            mount = partition.mountpoint
            out.add("disk.used_percent", usage.percent, PERCENT, mount=mount)
            out.add("disk.used_bytes", usage.used, BYTES, mount=mount)
            out.add("disk.free_bytes", usage.free, BYTES, mount=mount)
            out.add("disk.total_bytes", usage.total, BYTES, mount=mount)

    def _disk_io(self, out: _Samples) -> None:
        readings: dict[tuple[str, str], float] = {}
        for device, io in self._inputs.disk_io_per_disk().items():
            if not device.startswith(_IGNORED_DISK_PREFIXES):
                readings.update(_disk_readings(device, io))
        total = self._inputs.disk_io_total()
        if total is not None:
            readings.update(_disk_readings("", total))
        rates = self._disk_rates.update(readings, self._clock.monotonic())
        for (device, metric), rate in sorted(rates.items()):
            unit = BYTES_PER_S if "bytes" in metric else OPS_PER_S
            labels = {"device": device} if device else {}
            out.add(f"disk.{metric}", rate, unit, **labels)

    def _network(self, out: _Samples) -> None:
        stats = self._inputs.net_if_stats()
        readings: dict[tuple[str, str], float] = {}
        for nic, io in self._inputs.net_io_per_nic().items():
            if not _is_loopback(nic, stats.get(nic)):
                readings[(nic, "recv")] = io.bytes_recv
                readings[(nic, "sent")] = io.bytes_sent
        rates = self._net_rates.update(readings, self._clock.monotonic())
        for (nic, direction), rate in sorted(rates.items()):
            out.add(f"net.{direction}_bytes_per_s", rate, BYTES_PER_S, nic=nic)
            speed = stats[nic].speed_mbps if nic in stats else 0
            if speed > 0:
                # speed is in Mbit/s; rate in bytes/s.
                out.add(
                    f"net.{direction}_percent", rate * 8 / (speed * 1e6) * 100, PERCENT, nic=nic
                )

    def _processes(self, out: _Samples) -> None:
        out.add("process.count", len(self._inputs.pids()), COUNT)

    def _uptime(self, out: _Samples) -> None:
        out.add("host.uptime_s", max(0.0, out.now_ms / 1000 - self._inputs.boot_time()), SECONDS)


def real_mounts(partitions: Iterable[Partition]) -> list[Partition]:
    """Mounts worth a disk.used_percent: no pseudo or network fs, one per device."""
    chosen: dict[str, Partition] = {}
    for partition in partitions:
        fstype = partition.fstype.lower()
        if fstype in PSEUDO_FILESYSTEMS or fstype in NETWORK_FILESYSTEMS or not fstype:
            continue
        device = partition.device or partition.mountpoint
        current = chosen.get(device)
        if current is None or len(partition.mountpoint) < len(current.mountpoint):
            chosen[device] = partition
    return sorted(chosen.values(), key=lambda p: p.mountpoint)


def _disk_readings(device: str, io: DiskIo) -> dict[tuple[str, str], float]:
    return {
        (device, "read_bytes_per_s"): io.read_bytes,
        (device, "write_bytes_per_s"): io.write_bytes,
        (device, "read_ops_per_s"): io.read_count,
        (device, "write_ops_per_s"): io.write_count,
    }


def _is_loopback(nic: str, stats: NicStats | None) -> bool:
    if stats is not None and stats.loopback:
        return True
    return nic == "lo" or nic.lower().startswith("loopback")
