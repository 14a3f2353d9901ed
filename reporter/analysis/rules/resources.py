"""Host rules: sustained CPU/memory pressure, memory leaks, disks filling up.

Exhaustion forecasts fit a Theil-Sen line to the used amount (bytes when the
host series are there, else the percent series against 100 %) and report
the time from the last measurement until the line reaches the total. They
fire only when the Mann-Kendall test finds a significant upward trend and
the forecast falls within the horizon; a memory leak must also have grown by
``min_change_percent`` over the range (memory follows load up and down; a
disk fills slowly, so for disks the horizon alone decides).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta

from reporter.analysis import text
from reporter.analysis.rules.base import Finding, label_text
from reporter.analysis.stats import hours_until
from reporter.analysis.thresholds import AnalysisThresholds
from reporter.analysis.trend import Fit, Measured, fit
from reporter.model import AnalyticsData, Effort, Impact, ResourceUsage

_HOUR = timedelta(hours=1)
_URGENT_HOURS = 7 * 24.0
_SHARE_HIGH = 0.9
DISK_PERCENT_NAMES = ("disk.percent", "disk.used_percent")


def pressure(data: AnalyticsData, limits: AnalysisThresholds) -> list[Finding]:
    """CPU or memory above its threshold in most buckets of the range (not one spike)."""
    findings = []
    for usage in data.resources:
        if usage.name == "cpu.percent":
            findings += _pressure(usage, "cpu", "CPU", limits.cpu_percent, limits)
        elif usage.name == "memory.percent":
            findings += _pressure(usage, "memory", "Memory", limits.memory_percent, limits)
    return findings


def _pressure(
    usage: ResourceUsage, kind: str, label: str, limit: float, limits: AnalysisThresholds
) -> list[Finding]:
    values = usage.series.values()
    if len(values) < limits.min_points:
        return []
    above = sum(1 for v in values if v > limit)
    share = above / len(values)
    if share < limits.pressure_min_share:
        return []
    average, peak = sum(values) / len(values), max(values)
    critical = limit + (100 - limit) / 2  # as collector.health's resource status
    step_hours = usage.series.step / _HOUR
    advice = (
        "Scale the server up (more cores) or find the processes that keep it busy."
        if kind == "cpu"
        else "Add memory or find what holds it (a leak, oversized caches)."
    )
    return [
        Finding(
            type=f"{kind}_pressure",
            title=f"Sustained {label} pressure{label_text(usage.labels)}",
            description=(
                f"{label} use was above {text.percent(limit)} in {text.percent(share * 100)} of"
                f" the measured time ({text.hours(above * step_hours)} of"
                f" {text.hours(len(values) * step_hours)}), averaging {text.percent(average)}"
                f" and peaking at {text.percent(peak)}. {advice}"
            ),
            impact=Impact.HIGH if share >= _SHARE_HIGH or average > critical else Impact.MEDIUM,
            effort=Effort.MEDIUM,
            evidence={
                "threshold_percent": limit,
                "share_above_percent": share * 100,
                "avg_percent": average,
                "peak_percent": peak,
                "hours_above": above * step_hours,
                "hours_measured": len(values) * step_hours,
            },
            urgency=share,
        )
    ]


@dataclass(frozen=True, slots=True)
class _Capacity:
    """A used-amount series and the total it can reach."""

    labels: Mapping[str, str]
    used: ResourceUsage
    total: float
    unit: str  # "bytes" or "percent"


def _paired(used: Sequence[ResourceUsage], totals: Sequence[ResourceUsage]) -> list[_Capacity]:
    """Used series with the total of the same labels (its latest, else peak, value)."""
    found = []
    for series in used:
        for total in totals:
            size = total.latest if total.latest is not None else total.peak
            if dict(total.labels) == dict(series.labels) and size is not None and size > 0:
                found.append(_Capacity(series.labels, series, size, "bytes"))
                break
    return found


def _memory_capacities(data: AnalyticsData) -> list[_Capacity]:
    found = _paired(data.host.get("memory.used_bytes", ()), data.host.get("memory.total_bytes", ()))
    if found:
        return found
    return [
        _Capacity(r.labels, r, 100.0, "percent")
        for r in data.resources
        if r.name == "memory.percent"
    ]


def _disk_capacities(data: AnalyticsData) -> list[_Capacity]:
    found = _paired(data.host.get("disk.used_bytes", ()), data.host.get("disk.total_bytes", ()))
    if found:
        return found
    return [
        _Capacity(r.labels, r, 100.0, "percent")
        for r in data.resources
        if r.name in DISK_PERCENT_NAMES
    ]


@dataclass(frozen=True, slots=True)
class _Forecast:
    capacity: _Capacity
    measured: Measured
    fit: Fit
    hours_left: float
    latest: float


def _forecast(
    capacity: _Capacity, data: AnalyticsData, limits: AnalysisThresholds, horizon: float
) -> _Forecast | None:
    measured = Measured.of(capacity.used.series, data.range.start)
    result = fit(measured, limits, significant_only=True)
    if result is None or not result.significant or result.line.slope <= 0:
        return None
    left = hours_until(result.line, capacity.total, measured.hours[-1])
    if left is None or left > horizon:
        return None
    return _Forecast(capacity, measured, result, left, measured.values[-1])


def _amount(value: float, unit: str) -> str:
    return text.size(value) if unit == "bytes" else text.percent(value)


def _forecast_evidence(forecast: _Forecast, horizon_key: str) -> dict[str, float | str]:
    unit = forecast.capacity.unit
    return {
        f"slope_{unit}_per_hour": forecast.fit.line.slope,
        horizon_key: forecast.hours_left,
        f"used_latest_{unit}": forecast.latest,
        f"total_{unit}": forecast.capacity.total,
        "p_value": forecast.fit.test.p_value,
        "since": text.iso(forecast.measured.points[0].time),
    }


def memory_leak(data: AnalyticsData, limits: AnalysisThresholds) -> list[Finding]:
    """Memory in use growing steadily: time until it is exhausted at that pace."""
    findings = []
    for capacity in _memory_capacities(data):
        forecast = _forecast(capacity, data, limits, limits.memory_horizon_hours)
        if forecast is None or not forecast.fit.practical:
            continue
        unit, growth = capacity.unit, forecast.fit.change_percent or 0.0
        evidence = _forecast_evidence(forecast, "hours_to_exhaustion")
        evidence["growth_percent"] = growth
        findings.append(
            Finding(
                type="memory_leak",
                title=f"Memory growing steadily{label_text(capacity.labels)}",
                description=(
                    f"Memory in use grew by {text.percent(growth)} from"
                    f" {text.moment(forecast.measured.points[0].time)}, by"
                    f" {_amount(forecast.fit.line.slope, unit)} per hour (Theil-Sen;"
                    f" Mann-Kendall p = {forecast.fit.test.p_value:.2g}). At that pace the"
                    f" {_amount(capacity.total, unit)} are used up in about"
                    f" {text.hours(forecast.hours_left)} (now {_amount(forecast.latest, unit)})."
                    " Look for a memory leak; restarting the service only buys time."
                ),
                impact=Impact.HIGH if forecast.hours_left <= _URGENT_HOURS else Impact.MEDIUM,
                effort=Effort.MEDIUM,
                evidence=evidence,
                urgency=-forecast.hours_left,
            )
        )
    return findings


def disk_full(data: AnalyticsData, limits: AnalysisThresholds) -> list[Finding]:
    """Mounts whose usage trend reaches their size within the horizon."""
    findings = []
    for capacity in _disk_capacities(data):
        forecast = _forecast(capacity, data, limits, limits.disk_horizon_hours)
        if forecast is None:
            continue
        unit = capacity.unit
        mount = capacity.labels.get("mount", "")
        where = f"Disk {mount}" if mount else "Disk"
        evidence = _forecast_evidence(forecast, "hours_to_full")
        if mount:
            evidence["mount"] = mount
        findings.append(
            Finding(
                type="disk_full",
                title=f"{where} full in about {text.hours(forecast.hours_left)}"
                + label_text({k: v for k, v in capacity.labels.items() if k != "mount"}),
                description=(
                    f"{where} holds {_amount(forecast.latest, unit)} of"
                    f" {_amount(capacity.total, unit)} and grows by"
                    f" {_amount(forecast.fit.line.slope, unit)} per hour (Theil-Sen since"
                    f" {text.moment(forecast.measured.points[0].time)}; Mann-Kendall"
                    f" p = {forecast.fit.test.p_value:.2g}): full in about"
                    f" {text.hours(forecast.hours_left)}. Free space (old logs, backups) or"
                    " grow the volume."
                ),
                impact=Impact.HIGH if forecast.hours_left <= _URGENT_HOURS else Impact.MEDIUM,
                effort=Effort.LOW,
                evidence=evidence,
                urgency=-forecast.hours_left,
            )
        )
    return findings
