"""PsutilHostSource fed with fixture inputs: names, units, rates, resets, filters."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import psutil
import pytest
from agent_testkit import FakeHost
from hypothesis import given
from hypothesis import strategies as st

from agent.sources.host import CounterRates, PsutilHostSource, real_mounts
from agent.sources.inputs import (
    NIC_STATS_MAX_AGE_S,
    DiskIo,
    DiskUsage,
    NetIo,
    NicStats,
    Partition,
    PsutilInputs,
)
from dealerpulse.clock import FakeClock
from dealerpulse.model import Sample

NOW_MS = 1_700_000_000_000


def by_key(samples: list[Sample]) -> dict[tuple[str, tuple[tuple[str, str], ...]], Sample]:
    return {(s.name, s.labels): s for s in samples}


def value(samples: list[Sample], name: str, **labels: str) -> float:
    return by_key(samples)[(name, tuple(sorted(labels.items())))].value


def test_gauges_have_names_units_and_labels() -> None:
    got = PsutilHostSource(FakeHost(), FakeClock()).collect(NOW_MS)
    assert all(s.time_ms == NOW_MS for s in got)
    keyed = by_key(got)
    assert keyed[("cpu.percent", ())].value == 12.5
    assert keyed[("cpu.percent", ())].unit == "percent"
    assert value(got, "cpu.core.percent", core="0") == 10.0
    assert value(got, "cpu.core.percent", core="1") == 15.0
    assert [value(got, f"load.{w}") for w in ("1m", "5m", "15m")] == [0.5, 0.25, 0.125]
    assert value(got, "memory.percent") == 40.0
    assert keyed[("memory.used_bytes", ())].unit == "bytes"
    assert value(got, "memory.available_bytes") == 6_000
    assert value(got, "swap.percent") == 10.0 and value(got, "swap.used_bytes") == 100
    assert value(got, "disk.used_percent", mount="/") == 25.0
    assert value(got, "disk.free_bytes", mount="/") == 750
    assert value(got, "process.count") == 3 and keyed[("process.count", ())].unit == "count"
    assert value(got, "host.uptime_s") == pytest.approx(1_000.0)
    assert keyed[("host.uptime_s", ())].unit == "seconds"


def test_first_interval_emits_no_rates_then_rates_use_the_real_elapsed_time() -> None:
    host = FakeHost(
        disks={"sda": DiskIo(1_000, 2_000, 10, 20)},
        disk_total=DiskIo(1_000, 2_000, 10, 20),
        nics={"eth0": NetIo(bytes_sent=500, bytes_recv=1_000)},
    )
    clock = FakeClock()
    source = PsutilHostSource(host, clock)
    first = source.collect(NOW_MS)
    assert not [s for s in first if s.name.startswith(("disk.read", "disk.write", "net."))]
    clock.advance(4.0)  # the loop woke late: 4 s, not the nominal interval
    host.disks = {"sda": DiskIo(9_000, 2_000, 30, 20)}
    host.disk_total = DiskIo(9_000, 2_000, 30, 20)
    host.nics = {"eth0": NetIo(bytes_sent=4_500, bytes_recv=1_000)}
    got = source.collect(NOW_MS + 10_000)
    assert value(got, "disk.read_bytes_per_s", device="sda") == 2_000.0
    assert value(got, "disk.read_ops_per_s", device="sda") == 5.0
    assert value(got, "disk.write_bytes_per_s", device="sda") == 0.0
    assert by_key(got)[("disk.read_ops_per_s", (("device", "sda"),))].unit == "ops_per_second"
    assert value(got, "disk.read_bytes_per_s") == 2_000.0  # host total: no device label
    assert value(got, "net.sent_bytes_per_s", nic="eth0") == 1_000.0
    assert by_key(got)[("net.sent_bytes_per_s", (("nic", "eth0"),))].unit == "bytes_per_second"


def test_counter_that_goes_backwards_emits_no_rate_and_restarts() -> None:
    host = FakeHost(nics={"eth0": NetIo(10_000, 10_000)})
    clock = FakeClock()
    source = PsutilHostSource(host, clock)
    source.collect(NOW_MS)
    clock.advance(10)
    host.nics = {"eth0": NetIo(10_000, 50)}  # recv reset (driver reload)
    got = source.collect(NOW_MS + 10_000)
    assert ("net.recv_bytes_per_s", (("nic", "eth0"),)) not in by_key(got)
    assert value(got, "net.sent_bytes_per_s", nic="eth0") == 0.0
    clock.advance(10)
    host.nics = {"eth0": NetIo(10_000, 1_050)}
    got = source.collect(NOW_MS + 20_000)
    assert value(got, "net.recv_bytes_per_s", nic="eth0") == 100.0


def test_loopback_skipped_and_link_speed_percent_only_when_known() -> None:
    host = FakeHost(
        nics={"lo": NetIo(0, 0), "eth0": NetIo(0, 0), "wlan0": NetIo(0, 0), "lo2": NetIo(0, 0)},
        nic_stats={
            "eth0": NicStats(isup=True, speed_mbps=100),
            "wlan0": NicStats(isup=True, speed_mbps=0),
            "lo2": NicStats(isup=True, speed_mbps=0, loopback=True),
        },
    )
    clock = FakeClock()
    source = PsutilHostSource(host, clock)
    source.collect(NOW_MS)
    clock.advance(1)
    # eth0 received 1.25 MB in 1 s = 10 Mbit/s on a 100 Mbit/s link.
    host.nics = {k: NetIo(0, 1_250_000) for k in host.nics}
    got = source.collect(NOW_MS + 1_000)
    nics = {dict(s.labels)["nic"] for s in got if s.name.startswith("net.")}
    assert nics == {"eth0", "wlan0"}
    assert value(got, "net.recv_percent", nic="eth0") == pytest.approx(10.0)
    assert value(got, "net.sent_percent", nic="eth0") == 0.0
    assert ("net.recv_percent", (("nic", "wlan0"),)) not in by_key(got)


def test_pseudo_and_network_filesystems_skipped_and_devices_deduplicated() -> None:
    partitions = [
        Partition("/dev/sda1", "/", "ext4"),
        Partition("/dev/sda1", "/var/lib/docker/bind", "ext4"),  # bind mount of the same disk
        Partition("tmpfs", "/run", "tmpfs"),
        Partition("/dev/loop3", "/snap/core/1", "squashfs"),
        Partition("proc", "/proc", "proc"),
        Partition("srv:/export", "/mnt/share", "nfs4"),
        Partition("/dev/sdb1", "/data", "XFS"),
    ]
    assert [p.mountpoint for p in real_mounts(partitions)] == ["/", "/data"]
    host = FakeHost(
        partitions=partitions,
        usage={"/": DiskUsage(10, 5, 5, 50.0), "/data": DiskUsage(10, 1, 9, 10.0)},
    )
    got = PsutilHostSource(host, FakeClock()).collect(NOW_MS)
    mounts = {dict(s.labels)["mount"] for s in got if s.name == "disk.used_percent"}
    assert mounts == {"/", "/data"}


def test_loop_and_ram_devices_are_not_disks() -> None:
    io = DiskIo(0, 0, 0, 0)
    host = FakeHost(disks={"sda": io, "loop0": io, "ram1": io, "nvme0n1": io})
    clock = FakeClock()
    source = PsutilHostSource(host, clock)
    source.collect(NOW_MS)
    clock.advance(1)
    got = source.collect(NOW_MS + 1000)
    devices = {dict(s.labels).get("device") for s in got if s.name.startswith("disk.read")}
    assert devices == {"sda", "nvme0n1"}


def test_a_failing_reading_costs_only_its_group_and_is_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    host = FakeHost(broken={"memory"})
    source = PsutilHostSource(host, FakeClock())
    with caplog.at_level(logging.WARNING, logger="agent.sources.host"):
        first = source.collect(NOW_MS)
        source.collect(NOW_MS + 10_000)
    assert not [s for s in first if s.name.startswith("memory.")]
    assert value(first, "cpu.percent") == 12.5
    assert caplog.text.count("reading memory failed") == 1


def test_non_finite_values_are_not_emitted() -> None:
    got = PsutilHostSource(FakeHost(cpu=float("nan")), FakeClock()).collect(NOW_MS)
    assert ("cpu.percent", ()) not in by_key(got)


@given(
    st.lists(
        st.tuples(st.integers(0, 2**40), st.floats(0.001, 100)),
        min_size=1,
        max_size=20,
    )
)
def test_counter_rates_are_never_negative_and_match_deltas(
    steps: list[tuple[int, float]],
) -> None:
    rates = CounterRates()
    now, previous = 0.0, None
    for counter, elapsed in steps:
        now += elapsed
        got = rates.update({"c": float(counter)}, now)
        if previous is None or counter < previous[0]:
            assert got == {}
        else:
            assert got["c"] == pytest.approx((counter - previous[0]) / (now - previous[1]))
        previous = (counter, now)


def test_psutil_inputs_read_this_host() -> None:
    """The default inputs work on the machine the tests run on."""
    got = PsutilHostSource(PsutilInputs()).collect(NOW_MS)
    names = {s.name for s in got}
    assert {"cpu.percent", "memory.percent", "process.count", "load.1m"} <= names
    assert 0 <= value(got, "memory.percent") <= 100


def test_a_new_link_speed_shows_within_the_nic_stats_max_age(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """NIC stats are read once a minute, not each interval, and a change still shows."""
    speeds = iter([1000, 100])

    def if_stats() -> dict[str, SimpleNamespace]:
        return {"eth0": SimpleNamespace(isup=True, speed=next(speeds), flags="up,running")}

    monkeypatch.setattr(psutil, "net_if_stats", if_stats)
    now = [0.0]
    inputs = PsutilInputs(monotonic=lambda: now[0])
    assert inputs.net_if_stats()["eth0"].speed_mbps == 1000
    now[0] = NIC_STATS_MAX_AGE_S - 1
    assert inputs.net_if_stats()["eth0"].speed_mbps == 1000
    now[0] = NIC_STATS_MAX_AGE_S
    assert inputs.net_if_stats()["eth0"].speed_mbps == 100
