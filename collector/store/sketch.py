"""The latency sketch of an api_performance row, as a small JSON document.

``{"ra": 0.01, "offset": -3, "bins": [4, 0, 7], "zero": 0}`` keeps exactly
what :class:`dealerpulse.model.LatencySketch` holds, so sketches of many rows
can be read back and merged bin by bin.
"""

from __future__ import annotations

import math
from typing import Any

from dealerpulse.model import LatencySketch


def sketch_to_json(sketch: LatencySketch) -> dict[str, Any]:
    return {
        "ra": sketch.relative_accuracy,
        "offset": sketch.offset,
        "bins": list(sketch.bin_counts),
        "zero": sketch.zero_count,
    }


def sketch_from_json(document: Any) -> LatencySketch:
    """Parse what :func:`sketch_to_json` wrote; ValueError names the bad field."""
    if not isinstance(document, dict):
        raise ValueError(f"latency sketch must be a JSON object, got {type(document).__name__}")
    accuracy = document.get("ra")
    if (
        isinstance(accuracy, bool)
        or not isinstance(accuracy, int | float)
        or not math.isfinite(accuracy)
        or not 0 < accuracy < 1
    ):
        raise ValueError(f"latency sketch field 'ra' must be in (0, 1), got {accuracy!r}")
    offset = _whole(document, "offset", allow_negative=True)
    zero = _whole(document, "zero", allow_negative=False)
    bins = document.get("bins")
    if not isinstance(bins, list):
        raise ValueError(f"latency sketch field 'bins' must be a list, got {bins!r}")
    counts = tuple(_count(value, index) for index, value in enumerate(bins))
    return LatencySketch(
        relative_accuracy=float(accuracy), offset=offset, bin_counts=counts, zero_count=zero
    )


def _whole(document: dict[str, Any], key: str, *, allow_negative: bool) -> int:
    value = document.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or (value < 0 and not allow_negative):
        kind = "a whole number" if allow_negative else "a non-negative whole number"
        raise ValueError(f"latency sketch field {key!r} must be {kind}, got {value!r}")
    return value


def _count(value: Any, index: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"latency sketch field 'bins[{index}]' must be a count, got {value!r}")
    return value
