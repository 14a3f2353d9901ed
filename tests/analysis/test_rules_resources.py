"""Host rules: sustained pressure, memory leaks and disks filling up."""

from __future__ import annotations

import pytest

from reporter.analysis import recommend
from reporter.analysis.stats import mann_kendall, sens_slope
from reporter.model import Effort, Impact, Recommendation

from .factory import GIB, analytics, line, noise, resource


def of_type(found: tuple[Recommendation, ...], kind: str) -> list[Recommendation]:
    return [r for r in found if r.type == kind]


def bytes_of(name: str, values: list[float], **labels: str):  # type: ignore[no-untyped-def]
    return resource(name, values, labels, unit="bytes")


# ---- pressure


def test_cpu_above_the_threshold_most_of_the_range_is_pressure() -> None:
    cpu = resource("cpu.percent", [min(100.0, v) for v in noise(48, 88, 4, seed=1)])
    (found,) = of_type(recommend(analytics(resources=[cpu])), "cpu_pressure")
    assert float(found.evidence["share_above_percent"]) > 90
    assert found.evidence["threshold_percent"] == 80.0
    assert float(found.evidence["avg_percent"]) == pytest.approx(88, abs=2)
    assert found.evidence["hours_measured"] == 48.0
    assert found.impact is Impact.HIGH
    assert "above 80.0 %" in found.description


def test_memory_pressure_uses_the_memory_threshold() -> None:
    # 87 % most of the time: above 85 % (memory), though below nothing for CPU.
    memory = resource("memory.percent", noise(48, 87.5, 1.0, seed=2))
    found = recommend(analytics(resources=[memory]))
    assert [r.type for r in found] == ["memory_pressure"]


def test_one_cpu_spike_is_not_pressure() -> None:
    values = noise(48, 40, 5, seed=3)
    values[20] = 100.0
    cpu = resource("cpu.percent", values)
    assert of_type(recommend(analytics(resources=[cpu])), "cpu_pressure") == []


def test_busy_but_mostly_under_the_threshold_is_not_pressure() -> None:
    # Hovering at 75 % with sd 6: some buckets over 80 %, far from most.
    cpu = resource("cpu.percent", noise(48, 75, 6, seed=4))
    assert sum(v > 80 for v in cpu.series.values()) > 0
    assert of_type(recommend(analytics(resources=[cpu])), "cpu_pressure") == []


# ---- memory leak


def test_steadily_growing_memory_is_a_leak_with_time_to_exhaustion() -> None:
    # 4 GiB + 100 MiB/hour with noise, 16 GiB total: 8.6 GiB used at the end, full ~76 h later.
    used = line(48, 4 * GIB, 100 * 1024**2, sigma=30 * 1024**2, seed=5)
    host = {
        "memory.used_bytes": (bytes_of("memory.used_bytes", used),),
        "memory.total_bytes": (bytes_of("memory.total_bytes", [16 * GIB] * 48),),
    }
    (found,) = of_type(recommend(analytics(host=host)), "memory_leak")
    expected_hours = (16 * GIB - (4 * GIB + 47 * 100 * 1024**2)) / (100 * 1024**2)
    assert float(found.evidence["hours_to_exhaustion"]) == pytest.approx(expected_hours, rel=0.1)
    assert float(found.evidence["slope_bytes_per_hour"]) == pytest.approx(100 * 1024**2, rel=0.1)
    assert found.evidence["total_bytes"] == 16 * GIB
    assert float(found.evidence["p_value"]) < 0.05
    assert found.impact is Impact.HIGH  # exhausted within a week
    assert "16.00 GiB" in found.description


def test_flat_noisy_memory_is_not_a_leak() -> None:
    host = {
        "memory.used_bytes": (bytes_of("memory.used_bytes", noise(48, 8 * GIB, 0.5 * GIB)),),
        "memory.total_bytes": (bytes_of("memory.total_bytes", [16 * GIB] * 48),),
    }
    assert of_type(recommend(analytics(host=host)), "memory_leak") == []


def test_one_memory_spike_is_not_a_leak() -> None:
    used = noise(48, 8 * GIB, 0.1 * GIB, seed=6)
    used[30] = 15 * GIB
    host = {
        "memory.used_bytes": (bytes_of("memory.used_bytes", used),),
        "memory.total_bytes": (bytes_of("memory.total_bytes", [16 * GIB] * 48),),
    }
    assert of_type(recommend(analytics(host=host)), "memory_leak") == []


def test_slow_growth_with_years_of_headroom_is_not_reported() -> None:
    # +6 % over two days but 1 GiB of 256 GiB used: exhaustion far beyond 30 days.
    used = line(48, 1 * GIB, 0.06 * GIB / 47, sigma=0.001 * GIB, seed=7)
    host = {
        "memory.used_bytes": (bytes_of("memory.used_bytes", used),),
        "memory.total_bytes": (bytes_of("memory.total_bytes", [256 * GIB] * 48),),
    }
    assert of_type(recommend(analytics(host=host)), "memory_leak") == []


def test_memory_percent_is_the_fallback_without_byte_series() -> None:
    memory = resource("memory.percent", line(48, 40, 0.5, sigma=0.5, seed=8))
    (found,) = of_type(recommend(analytics(resources=[memory])), "memory_leak")
    # 40 + 47 * 0.5 = 63.5 % now, 36.5 points to go at 0.5 points/hour.
    assert float(found.evidence["hours_to_exhaustion"]) == pytest.approx(73, rel=0.1)
    assert found.evidence["total_percent"] == 100.0


# ---- disk


def test_the_filling_mount_is_forecast_and_the_steady_one_is_not() -> None:
    total = 500 * GIB
    filling = line(48, 400 * GIB, 1 * GIB, sigma=0.2 * GIB, seed=9)  # full ~52 h after the end
    steady = noise(48, 100 * GIB, 0.2 * GIB, seed=10)
    host = {
        "disk.used_bytes": (
            bytes_of("disk.used_bytes", filling, mount="/var"),
            bytes_of("disk.used_bytes", steady, mount="/"),
        ),
        "disk.total_bytes": (
            bytes_of("disk.total_bytes", [total] * 48, mount="/"),
            bytes_of("disk.total_bytes", [total] * 48, mount="/var"),
        ),
    }
    (found,) = of_type(recommend(analytics(host=host)), "disk_full")
    assert found.evidence["mount"] == "/var"
    assert float(found.evidence["hours_to_full"]) == pytest.approx(53, rel=0.1)
    assert found.effort is Effort.LOW
    assert found.title.startswith("Disk /var full in about")


def test_a_disk_full_only_beyond_the_horizon_is_silent() -> None:
    # 1 GiB/hour with 2 TiB free: about 85 days away.
    used = line(48, 100 * GIB, 1 * GIB, sigma=0.2 * GIB, seed=11)
    host = {
        "disk.used_bytes": (bytes_of("disk.used_bytes", used, mount="/"),),
        "disk.total_bytes": (bytes_of("disk.total_bytes", [2200 * GIB] * 48, mount="/"),),
    }
    assert of_type(recommend(analytics(host=host)), "disk_full") == []


def test_disk_percent_is_the_fallback_without_byte_series() -> None:
    disk = resource("disk.percent", line(48, 70, 0.2, sigma=0.1, seed=12), {"mount": "/data"})
    (found,) = of_type(recommend(analytics(resources=[disk])), "disk_full")
    assert found.evidence["mount"] == "/data"
    assert float(found.evidence["hours_to_full"]) == pytest.approx((100 - 79.4) / 0.2, rel=0.1)


def test_one_jump_in_disk_use_is_not_a_filling_disk() -> None:
    used = noise(48, 300 * GIB, 0.5 * GIB, seed=13)
    used[40] = 590 * GIB  # a big temporary file, gone the next hour
    host = {
        "disk.used_bytes": (bytes_of("disk.used_bytes", used, mount="/"),),
        "disk.total_bytes": (bytes_of("disk.total_bytes", [600 * GIB] * 48, mount="/"),),
    }
    assert of_type(recommend(analytics(host=host)), "disk_full") == []


def test_a_nearly_full_but_steady_disk_gets_no_made_up_forecast() -> None:
    # Noise around 590 of 600 GiB: its Theil-Sen line tilts up a little by chance
    # and would "reach" 600 GiB within days, but the trend is not significant.
    used = noise(48, 590 * GIB, 3 * GIB, seed=3)
    assert sens_slope(range(48), used).slope > 0
    assert mann_kendall(range(48), used).p_value > 0.05
    host = {
        "disk.used_bytes": (bytes_of("disk.used_bytes", used, mount="/"),),
        "disk.total_bytes": (bytes_of("disk.total_bytes", [600 * GIB] * 48, mount="/"),),
    }
    assert of_type(recommend(analytics(host=host)), "disk_full") == []
