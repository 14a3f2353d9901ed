"""Numbers, sizes, durations and times formatted for recommendation text.

Deterministic (no locale, no clock) so the same evidence always reads the same.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import UTC, datetime

_BYTE_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def number(value: float) -> str:
    """About three significant figures, thousands separated: 1,234 / 56.7 / 0.0123."""
    if not math.isfinite(value):
        return str(value)
    size = abs(value)
    if size >= 100:
        return f"{value:,.0f}"
    if size >= 10:
        return f"{value:.1f}"
    if size >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def ms(value: float) -> str:
    return f"{number(value)} ms"


def percent(value: float) -> str:
    return f"{number(value)} %"


def size(value: float) -> str:
    """Bytes in binary units: 1.50 GiB."""
    scaled = float(value)
    for unit in _BYTE_UNITS:
        if abs(scaled) < 1024 or unit == _BYTE_UNITS[-1]:
            return f"{scaled:.0f} {unit}" if unit == "B" else f"{scaled:.2f} {unit}"
        scaled /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def hours(value: float) -> str:
    """A duration given in hours: 45 min / 17.5 h / 3.2 days."""
    if value < 1:
        return f"{value * 60:.0f} min"
    if value < 48:
        return f"{value:.1f} h"
    return f"{value / 24:.1f} days"


def moment(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def hour_ranges(hours_of_day: Iterable[int]) -> str:
    """Hours of the day as ranges, wrapping midnight.

    {22, 23, 0, 9} -> "09:00-10:00, 22:00-01:00".
    """
    chosen = sorted(set(hours_of_day))
    if not chosen:
        return ""
    if len(chosen) == 24:
        return "00:00-24:00"
    runs: list[list[int]] = []
    for hour in chosen:
        if runs and runs[-1][-1] == hour - 1:
            runs[-1].append(hour)
        else:
            runs.append([hour])
    # A run ending at 23 continues into a run starting at 0.
    if len(runs) > 1 and runs[-1][-1] == 23 and runs[0][0] == 0:
        runs[-1].extend(runs.pop(0))
        runs.sort(key=lambda run: run[0])
    return ", ".join(f"{run[0]:02d}:00-{(run[-1] + 1) % 24:02d}:00" for run in runs)
