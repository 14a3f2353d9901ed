"""A mergeable latency sketch with a relative-error guarantee (DDSketch-style).

A value ``v`` (milliseconds) lands in the logarithmic bucket
``i = ceil(log(v) / log(gamma))`` with ``gamma = (1 + a) / (1 - a)``, so the
bucket covers ``(gamma**(i-1), gamma**i]`` and its representative value
``2 * gamma**i / (gamma + 1)`` is within relative error ``a`` of every value in
it. Quantiles are *lower* rank-based quantiles: ``quantile(q)`` estimates the
element at 0-based rank ``floor(q * (count - 1))`` of the sorted data, and the
estimate ``e`` of that element ``x`` satisfies ``|e - x| <= a * x``.

Values below :data:`MIN_INDEXABLE_MS` (1 ns, below any clock's resolution)
are counted in ``zero_count``; for them the error is absolute, under 1 ns.

Size is bounded: at most ``max_bins`` buckets (default 2048) are kept. When the
span of buckets would grow past it, the *lowest* buckets are folded into the
lowest kept one. That keeps the guarantee for every quantile whose true value
lies in a kept bucket (the high quantiles, the ones latency cares about) and
over-estimates the collapsed low ones. With a = 1 % and 2048 buckets the kept
span is a factor of gamma**2048 ~ 6e17, so real latency data never collapses.

Merging is exact (bucket-wise sums) and order-independent: merging in any
order, or adding the concatenated data to one sketch, gives the same buckets.
"""

from __future__ import annotations

import math
import struct
import sys
from collections.abc import Iterable

from dealerpulse.model import LatencySketch

__all__ = [
    "DEFAULT_MAX_BINS",
    "DEFAULT_RELATIVE_ACCURACY",
    "MIN_INDEXABLE_MS",
    "DDSketch",
    "SketchDecodeError",
    "SketchError",
]

DEFAULT_RELATIVE_ACCURACY = 0.01
DEFAULT_MAX_BINS = 2048
MIN_INDEXABLE_MS = 1e-6
MIN_RELATIVE_ACCURACY = 1e-6
MAX_RELATIVE_ACCURACY = 0.5
# Hard ceiling on max_bins so a decoded header cannot make us allocate wildly.
MAX_BINS_LIMIT = 1 << 16
_UINT64_LIMIT = 2**64

_MAGIC = b"\xdd"
_VERSION = 1
_FLOAT = struct.Struct(">d")


class SketchError(ValueError):
    """A sketch was used or built wrongly (bad value, accuracy, quantile...)."""


class SketchDecodeError(SketchError):
    """Bytes or a model that do not describe a valid sketch."""


class DDSketch:
    """Quantile sketch of non-negative values (latencies in ms). Not thread-safe."""

    __slots__ = (
        "_bins",
        "_count",
        "_gamma",
        "_high",
        "_low",
        "_max",
        "_max_bins",
        "_min",
        "_multiplier",
        "_relative_accuracy",
        "_sum",
        "_zero_count",
    )

    def __init__(
        self,
        relative_accuracy: float = DEFAULT_RELATIVE_ACCURACY,
        max_bins: int = DEFAULT_MAX_BINS,
    ) -> None:
        _check_accuracy(relative_accuracy, SketchError)
        _check_max_bins(max_bins, SketchError)
        self._relative_accuracy = relative_accuracy
        self._max_bins = max_bins
        self._gamma = (1 + relative_accuracy) / (1 - relative_accuracy)
        self._multiplier = 1 / math.log(self._gamma)
        self._bins: dict[int, int] = {}
        self._low = 0
        self._high = 0
        self._zero_count = 0
        self._count = 0
        self._sum = 0.0
        self._min = math.inf
        self._max = -math.inf

    # ---- reading

    @property
    def relative_accuracy(self) -> float:
        return self._relative_accuracy

    @property
    def max_bins(self) -> int:
        return self._max_bins

    @property
    def count(self) -> int:
        return self._count

    @property
    def sum(self) -> float:
        return self._sum

    @property
    def min(self) -> float:
        """Smallest value added (exact); 0.0 for an empty sketch."""
        return self._min if self._count else 0.0

    @property
    def max(self) -> float:
        """Largest value added (exact); 0.0 for an empty sketch."""
        return self._max if self._count else 0.0

    @property
    def zero_count(self) -> int:
        return self._zero_count

    def bin_count(self) -> int:
        """How many buckets are in use (memory held, not values counted)."""
        return len(self._bins)

    def quantile(self, q: float) -> float:
        """Estimate of the lower q-quantile: the value at rank floor(q * (count - 1))."""
        if not 0.0 <= q <= 1.0:  # also refuses NaN
            raise SketchError(f"quantile must be between 0 and 1, got {q!r}")
        if self._count == 0:
            raise SketchError("an empty sketch has no quantiles")
        rank = math.floor(q * (self._count - 1))
        if rank == 0:
            return self._min
        if rank == self._count - 1:
            return self._max
        estimate = 0.0
        if rank >= self._zero_count:
            cumulative = self._zero_count
            for index in sorted(self._bins):
                cumulative += self._bins[index]
                if cumulative > rank:
                    estimate = self._value_of(index)
                    break
        # The true value lies in [min, max]; clamping can only bring us closer.
        return min(max(estimate, self._min), self._max)

    def value_of_index(self, index: int) -> float:
        """The representative value of bucket ``index`` (for readers of the model)."""
        return self._value_of(index)

    # ---- writing

    def add(self, value_ms: float, count: int = 1) -> None:
        if not 0.0 <= value_ms < math.inf:  # refuses NaN, inf and negatives
            raise SketchError(f"value must be a finite number >= 0, got {value_ms!r}")
        if type(count) is not int or count < 1:
            raise SketchError(f"count must be a whole number >= 1, got {count!r}")
        if value_ms < MIN_INDEXABLE_MS:
            self._zero_count += count
        else:
            self._add_to_bin(math.ceil(math.log(value_ms) * self._multiplier), count)
        self._count += count
        self._sum += value_ms * count
        if value_ms < self._min:
            self._min = value_ms
        if value_ms > self._max:
            self._max = value_ms

    def merge(self, other: DDSketch) -> None:
        """Add every value of ``other`` to this sketch (exact bucket-wise sums)."""
        if other._relative_accuracy != self._relative_accuracy:
            raise SketchError(
                "cannot merge sketches of different relative accuracy: "
                f"{self._relative_accuracy} and {other._relative_accuracy}"
            )
        for index, count in other._bins.items():
            self._add_to_bin(index, count)
        self._zero_count += other._zero_count
        self._count += other._count
        self._sum += other._sum
        self._min = min(self._min, other._min)
        self._max = max(self._max, other._max)

    def copy(self) -> DDSketch:
        twin = DDSketch(self._relative_accuracy, self._max_bins)
        twin.merge(self)
        return twin

    @classmethod
    def of(
        cls,
        values: Iterable[float],
        relative_accuracy: float = DEFAULT_RELATIVE_ACCURACY,
        max_bins: int = DEFAULT_MAX_BINS,
    ) -> DDSketch:
        sketch = cls(relative_accuracy, max_bins)
        for value in values:
            sketch.add(value)
        return sketch

    # ---- model (protobuf LatencySketch) conversion

    def to_model(self) -> LatencySketch:
        if not self._bins:
            return LatencySketch(self._relative_accuracy, 0, (), self._zero_count)
        dense = tuple(self._bins.get(i, 0) for i in range(self._low, self._high + 1))
        return LatencySketch(self._relative_accuracy, self._low, dense, self._zero_count)

    @classmethod
    def from_model(
        cls,
        model: LatencySketch,
        *,
        max_bins: int = DEFAULT_MAX_BINS,
        sum_ms: float | None = None,
        min_ms: float | None = None,
        max_ms: float | None = None,
    ) -> DDSketch:
        """Rebuild a sketch from its model; buckets are restored exactly.

        The model carries no sum/min/max: pass the exact ones when known (an
        EndpointStat has them); otherwise they are estimated from the buckets.
        More buckets than ``max_bins`` are collapsed as described above.
        """
        _check_accuracy(model.relative_accuracy, SketchDecodeError)
        lowest, highest = _index_range(model.relative_accuracy)
        last = model.offset + len(model.bin_counts) - 1
        if model.bin_counts and not lowest <= model.offset <= last <= highest:
            raise SketchDecodeError(
                f"bins {model.offset}..{last} are outside the bucket index range "
                f"{lowest}..{highest} of relative accuracy {model.relative_accuracy}"
            )
        for position, count in enumerate(model.bin_counts):
            _check_count(count, f"bin_counts[{position}]")
        _check_count(model.zero_count, "zero_count")
        sketch = cls(model.relative_accuracy, max_bins)
        for position, count in enumerate(model.bin_counts):
            if count:
                sketch._add_to_bin(model.offset + position, count)
        sketch._zero_count = model.zero_count
        sketch._count = model.zero_count + sum(model.bin_counts)
        if sketch._count:
            sketch._restore_stats(sum_ms, min_ms, max_ms)
        return sketch

    # ---- compact bytes

    def to_bytes(self) -> bytes:
        """Varint encoding: magic, version, accuracy, max_bins, zero_count,
        offset, dense bins, then sum/min/max as float64."""
        model = self.to_model()
        out = bytearray(_MAGIC)
        out.append(_VERSION)
        out += _FLOAT.pack(self._relative_accuracy)
        _put_varint(out, self._max_bins)
        _put_varint(out, self._zero_count)
        _put_varint(out, _zigzag(model.offset))
        _put_varint(out, len(model.bin_counts))
        for count in model.bin_counts:
            _put_varint(out, count)
        for number in (self._sum, self.min, self.max):
            out += _FLOAT.pack(number)
        return bytes(out)

    @classmethod
    def from_bytes(cls, data: bytes) -> DDSketch:
        """Strict inverse of :meth:`to_bytes`; raises SketchDecodeError on any flaw."""
        return _Decoder(data).sketch()

    # ---- internals

    def _value_of(self, index: int) -> float:
        try:
            return 2.0 * math.pow(self._gamma, index) / (self._gamma + 1.0)
        except OverflowError:  # only the top bucket or two, near the largest float
            return sys.float_info.max

    def _add_to_bin(self, index: int, count: int) -> None:
        bins = self._bins
        if index in bins:
            bins[index] += count
            return
        if not bins:
            self._low = self._high = index
        elif index < self._low:
            floor = self._high - self._max_bins + 1
            index = max(index, floor)
            self._low = index
        elif index > self._high:
            self._high = index
            self._collapse_below(index - self._max_bins + 1)
        bins[index] = bins.get(index, 0) + count

    def _collapse_below(self, floor: int) -> None:
        if self._low >= floor:
            return
        folded = [index for index in self._bins if index < floor]
        moved = sum(self._bins.pop(index) for index in folded)
        self._bins[floor] = self._bins.get(floor, 0) + moved
        self._low = floor

    def _restore_stats(
        self, sum_ms: float | None, min_ms: float | None, max_ms: float | None
    ) -> None:
        lowest = 0.0 if self._zero_count else self._value_of(self._low)
        highest = self._value_of(self._high) if self._bins else 0.0
        self._min = lowest if min_ms is None else min_ms
        self._max = highest if max_ms is None else max_ms
        if sum_ms is None:
            sum_ms = sum(self._value_of(i) * c for i, c in self._bins.items())
        self._sum = sum_ms


# ---- validation helpers


def _check_accuracy(accuracy: float, error: type[SketchError]) -> None:
    if not MIN_RELATIVE_ACCURACY <= accuracy <= MAX_RELATIVE_ACCURACY:
        raise error(
            f"relative_accuracy must be between {MIN_RELATIVE_ACCURACY} and "
            f"{MAX_RELATIVE_ACCURACY}, got {accuracy!r}"
        )


def _check_max_bins(max_bins: int, error: type[SketchError]) -> None:
    if type(max_bins) is not int or not 1 <= max_bins <= MAX_BINS_LIMIT:
        raise error(f"max_bins must be a whole number from 1 to {MAX_BINS_LIMIT}, got {max_bins!r}")


def _index_range(accuracy: float) -> tuple[int, int]:
    """The bucket indexes add() can produce: MIN_INDEXABLE_MS up to the largest float."""
    multiplier = 1 / math.log((1 + accuracy) / (1 - accuracy))
    return (
        math.ceil(math.log(MIN_INDEXABLE_MS) * multiplier),
        math.ceil(math.log(sys.float_info.max) * multiplier),
    )


def _check_count(count: int, what: str) -> None:
    if type(count) is not int or not 0 <= count < _UINT64_LIMIT:
        raise SketchDecodeError(f"{what} must be a whole number from 0 to 2**64-1, got {count!r}")


# ---- varints


def _zigzag(number: int) -> int:
    return number * 2 if number >= 0 else -number * 2 - 1


def _unzigzag(number: int) -> int:
    return number >> 1 if not number & 1 else -((number + 1) >> 1)


def _put_varint(out: bytearray, number: int) -> None:
    while number > 0x7F:
        out.append((number & 0x7F) | 0x80)
        number >>= 7
    out.append(number)


class _Decoder:
    def __init__(self, data: bytes) -> None:
        if not isinstance(data, bytes | bytearray | memoryview):
            raise SketchDecodeError(f"sketch bytes must be bytes, got {type(data).__name__}")
        self._data = bytes(data)
        self._pos = 0

    def sketch(self) -> DDSketch:
        if self._take(1) != _MAGIC:
            raise SketchDecodeError("not a DealerPulse sketch: bad magic byte")
        version = self._take(1)[0]
        if version != _VERSION:
            raise SketchDecodeError(f"unsupported sketch encoding version {version}")
        accuracy = self._float("relative_accuracy")
        _check_accuracy(accuracy, SketchDecodeError)
        max_bins = self._varint("max_bins")
        _check_max_bins(max_bins, SketchDecodeError)
        zero_count = self._varint("zero_count")
        offset = _unzigzag(self._varint("offset"))
        bins = self._bins(max_bins)
        sum_ms, min_ms, max_ms = (self._float(name) for name in ("sum", "min", "max"))
        if self._pos != len(self._data):
            raise SketchDecodeError(f"{len(self._data) - self._pos} trailing bytes after sketch")
        model = LatencySketch(accuracy, offset, bins, zero_count)
        _check_stats(model, sum_ms, min_ms, max_ms)
        return DDSketch.from_model(
            model, max_bins=max_bins, sum_ms=sum_ms, min_ms=min_ms, max_ms=max_ms
        )

    def _bins(self, max_bins: int) -> tuple[int, ...]:
        length = self._varint("bin count")
        if length > max_bins:
            raise SketchDecodeError(f"{length} bins exceed max_bins {max_bins}")
        bins = tuple(self._varint(f"bin_counts[{i}]") for i in range(length))
        if bins and (bins[0] == 0 or bins[-1] == 0):
            raise SketchDecodeError("first and last bins must be non-zero")
        return bins

    def _take(self, size: int) -> bytes:
        end = self._pos + size
        if end > len(self._data):
            raise SketchDecodeError(f"truncated sketch: needed {size} bytes at offset {self._pos}")
        chunk = self._data[self._pos : end]
        self._pos = end
        return chunk

    def _float(self, what: str) -> float:
        (number,) = _FLOAT.unpack(self._take(8))
        if not math.isfinite(number):
            raise SketchDecodeError(f"{what} is not a finite number: {number!r}")
        return float(number)

    def _varint(self, what: str) -> int:
        number = 0
        for shift in range(0, 70, 7):
            byte = self._take(1)[0]
            number |= (byte & 0x7F) << shift
            if not byte & 0x80:
                if number >= _UINT64_LIMIT or (byte == 0 and shift):
                    raise SketchDecodeError(f"{what}: malformed varint at offset {self._pos}")
                return number
        raise SketchDecodeError(f"{what}: varint longer than 10 bytes")


def _check_stats(model: LatencySketch, sum_ms: float, min_ms: float, max_ms: float) -> None:
    total = model.zero_count + sum(model.bin_counts)
    if total == 0:
        if model.offset or sum_ms or min_ms or max_ms:
            raise SketchDecodeError("an empty sketch must have zero offset, sum, min and max")
        return
    if not 0.0 <= min_ms <= max_ms:
        raise SketchDecodeError(f"need 0 <= min <= max, got min={min_ms!r} max={max_ms!r}")
    if sum_ms < 0.0:
        raise SketchDecodeError(f"sum must be >= 0, got {sum_ms!r}")
