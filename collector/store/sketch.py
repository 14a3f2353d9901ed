"""The latency sketch of an api_performance row, as a small JSON document, and
the fast sum of many such sketches.

``{"ra": 0.01, "offset": -3, "bins": [4, 0, 7], "zero": 0}`` keeps exactly
what :class:`dealerpulse.model.LatencySketch` holds, so sketches of many rows
can be read back and merged bin by bin: :class:`SketchSum` does that without a
:class:`~dealerpulse.sketch.DDSketch` per row (health reads hundreds of rows a
call: bench/realtime.py measures it).
"""

from __future__ import annotations

import bisect
import functools
import itertools
import math
import operator
import sys
from collections.abc import Sequence
from typing import Any

from dealerpulse.model import LatencySketch
from dealerpulse.sketch import (
    DEFAULT_MAX_BINS,
    MIN_INDEXABLE_MS,
    DDSketch,
    SketchDecodeError,
    SketchError,
)

_INT_ONLY = frozenset({int})


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
    if not _all_counts(bins):
        # The slow walk only to name the first bad entry.
        for index, value in enumerate(bins):
            _count(value, index)
    return LatencySketch(
        relative_accuracy=float(accuracy), offset=offset, bin_counts=tuple(bins), zero_count=zero
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


def _all_counts(values: Sequence[Any]) -> bool:
    """Every value an int (not a bool) and not negative; map and min run in C."""
    return not values or (set(map(type, values)) <= _INT_ONLY and min(values) >= 0)


@functools.lru_cache(maxsize=16)
def bucket_index_range(relative_accuracy: float) -> tuple[int, int]:
    """The bucket indexes a DDSketch of this accuracy can hold (as DDSketch.from_model checks)."""
    multiplier = 1 / math.log((1 + relative_accuracy) / (1 - relative_accuracy))
    return (
        math.ceil(math.log(MIN_INDEXABLE_MS) * multiplier),
        math.ceil(math.log(sys.float_info.max) * multiplier),
    )


class SketchSum:
    """The bucket-wise sum of many sketch models of one relative accuracy.

    Holds what ``DDSketch.from_model`` of each model, merged with
    ``DDSketch.merge``, would hold (same buckets, same collapse of the lowest
    ones past ``max_bins``, the exact min and max passed in) and answers the
    same quantiles, at the cost of one slice addition (in C) per model instead
    of a DDSketch and a dict update per bucket. A model is checked as
    ``from_model`` checks it before anything is added, so a refused one
    (SketchError) leaves the sum as it was. Not thread-safe.
    """

    __slots__ = (
        "_counts",
        "_high",
        "_index_range",
        "_low",
        "_max",
        "_max_bins",
        "_min",
        "_scale",
        "_zero",
        "relative_accuracy",
    )

    def __init__(self, relative_accuracy: float, max_bins: int = DEFAULT_MAX_BINS) -> None:
        # The same checks and errors as a DDSketch; it also gives the buckets' values.
        self._scale = DDSketch(relative_accuracy, max_bins)
        self.relative_accuracy = relative_accuracy
        self._max_bins = max_bins
        self._index_range = bucket_index_range(relative_accuracy)
        # Dense counts of buckets _low.._high; both ends non-zero once non-empty.
        self._counts: list[int] = []
        self._low = self._high = 0
        self._zero = 0
        self._min = math.inf
        self._max = -math.inf

    def add(self, model: LatencySketch, *, min_ms: float, max_ms: float) -> None:
        """Add one model whose values had this exact min and max."""
        if model.relative_accuracy != self.relative_accuracy:
            raise SketchError(
                "cannot merge sketches of different relative accuracy: "
                f"{self.relative_accuracy} and {model.relative_accuracy}"
            )
        counts = model.bin_counts
        self._check(model)
        first, last = _nonzero_span(counts)
        if first > last and not model.zero_count:
            return  # an empty sketch: DDSketch.merge would change nothing either
        if first <= last:
            trimmed = counts if last - first + 1 == len(counts) else counts[first : last + 1]
            self._add_bins(model.offset + first, trimmed)
        self._zero += model.zero_count
        self._min = min(self._min, min_ms)
        self._max = max(self._max, max_ms)

    def merge(self, other: SketchSum) -> None:
        """Add everything ``other`` holds (of the same accuracy)."""
        if other.relative_accuracy != self.relative_accuracy:
            raise SketchError(
                "cannot merge sketches of different relative accuracy: "
                f"{self.relative_accuracy} and {other.relative_accuracy}"
            )
        if other._counts:
            self._add_bins(other._low, other._counts)
        self._zero += other._zero
        self._min = min(self._min, other._min)
        self._max = max(self._max, other._max)

    @property
    def count(self) -> int:
        return self._zero + sum(self._counts)

    def quantile(self, q: float) -> float:
        """The lower q-quantile exactly as DDSketch.quantile gives it for the same
        buckets, min and max (bisecting the running sums instead of walking a dict)."""
        if not 0.0 <= q <= 1.0:  # also refuses NaN
            raise SketchError(f"quantile must be between 0 and 1, got {q!r}")
        running = list(itertools.accumulate(self._counts))
        count = self._zero + (running[-1] if running else 0)
        if count == 0:
            raise SketchError("an empty sketch has no quantiles")
        rank = math.floor(q * (count - 1))
        if rank == 0:
            return self._min
        if rank == count - 1:
            return self._max
        estimate = 0.0
        if rank >= self._zero:
            position = bisect.bisect_right(running, rank - self._zero)
            estimate = self._scale.value_of_index(self._low + position)
        return min(max(estimate, self._min), self._max)

    def _check(self, model: LatencySketch) -> None:
        counts = model.bin_counts
        if not _all_counts(counts):
            position, bad = next((i, c) for i, c in enumerate(counts) if not _all_counts((c,)))
            raise SketchDecodeError(
                f"bin_counts[{position}] must be a non-negative whole number, got {bad!r}"
            )
        if not _all_counts((model.zero_count,)):
            raise SketchDecodeError(
                f"zero_count must be a non-negative whole number, got {model.zero_count!r}"
            )
        lowest, highest = self._index_range
        last = model.offset + len(counts) - 1
        if counts and not lowest <= model.offset <= last <= highest:
            raise SketchDecodeError(
                f"bins {model.offset}..{last} are outside the bucket index range "
                f"{lowest}..{highest} of relative accuracy {self.relative_accuracy}"
            )

    def _add_bins(self, low: int, counts: Sequence[int]) -> None:
        """Add dense counts from bucket ``low`` (both ends non-zero)."""
        high = low + len(counts) - 1
        if self._counts and self._low <= low and high <= self._high:
            _place(self._counts, self._low, low, counts)
            return
        new_high = max(high, self._high) if self._counts else high
        new_low = min(low, self._low) if self._counts else low
        # As DDSketch does: buckets below the newest max_bins fold into the lowest kept one.
        new_low = max(new_low, new_high - self._max_bins + 1)
        merged = [0] * (new_high - new_low + 1)
        _place(merged, new_low, self._low, self._counts)
        _place(merged, new_low, low, counts)
        self._counts, self._low, self._high = merged, new_low, new_high


def _nonzero_span(counts: Sequence[int]) -> tuple[int, int]:
    """First and last position of a non-zero count; (len, -1) when there is none."""
    first, last = 0, len(counts) - 1
    while last >= 0 and not counts[last]:
        last -= 1
    while first < last and not counts[first]:
        first += 1
    return (first, last) if last >= 0 else (len(counts), -1)


def _place(target: list[int], target_low: int, low: int, counts: Sequence[int]) -> None:
    """Add ``counts`` (from bucket ``low``) into ``target`` (from bucket ``target_low``,
    reaching at least as high); those below ``target_low`` fold into its first bucket."""
    skip = max(0, target_low - low)
    if skip:
        target[0] += sum(counts[:skip])
        counts = counts[skip:]
    start = low + skip - target_low
    end = start + len(counts)
    target[start:end] = map(operator.add, target[start:end], counts)
