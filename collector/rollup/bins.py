"""Latency sketch buckets in bulk: a compact binary form and vectorised merges.

Rollup rows keep a sketch as dense bucket counts (the buckets of
:class:`dealerpulse.sketch.DDSketch`: index ``i`` covers
``(gamma**(i-1), gamma**i]``). Reading 30 days of hourly rows means
thousands of sketches, so the stored form is decodable by
``numpy.frombuffer`` (about 1 us a row, against about 50 us for the JSON of
``api_performance`` and 500 us for ``DDSketch.from_bytes``; measured, see
docs/notes/store.md):

    magic 0xDB, version 1, relative accuracy (float64), offset (int32),
    zero count (uint64), count width in bytes (2, 4 or 8), then the counts
    (little-endian unsigned, first and last non-zero).

:func:`merge_groups` adds many sketches into a few groups at once (one
``bincount``), and :meth:`MergedBins.quantiles` answers the lower quantile
exactly as ``DDSketch.quantile`` does for the same buckets, min and max.
"""

from __future__ import annotations

import logging
import math
import struct
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from collector.store.sketch import sketch_from_json
from dealerpulse.sketch import DEFAULT_MAX_BINS

logger = logging.getLogger(__name__)

_MAGIC = 0xDB
_VERSION = 1
_HEADER = struct.Struct("<BBdiQB")
_DTYPES: dict[int, np.dtype[Any]] = {2: np.dtype("<u2"), 4: np.dtype("<u4"), 8: np.dtype("<u8")}
_UINT16_LIMIT = 2**16
_UINT32_LIMIT = 2**32

Counts = npt.NDArray[np.unsignedinteger[Any]]


class BinsError(ValueError):
    """Bytes that are not a rollup sketch; the message names what is wrong."""


@dataclass(frozen=True, slots=True, eq=False)
class Bins:
    """Dense bucket counts from bucket ``offset`` upwards, plus values below 1 ns."""

    relative_accuracy: float
    offset: int
    counts: Counts
    zero_count: int = 0

    @property
    def total(self) -> int:
        return self.zero_count + int(self.counts.sum())


def bins_from_json(document: Any) -> Bins:
    """The api_performance JSON sketch (collector.store.sketch format) as Bins."""
    model = sketch_from_json(document)
    counts = np.asarray(model.bin_counts, dtype=np.uint64)
    return Bins(model.relative_accuracy, model.offset, counts, model.zero_count)


def encode(bins: Bins) -> bytes:
    counts = bins.counts
    nonzero = np.flatnonzero(counts)
    offset = bins.offset
    if nonzero.size:
        first, last = int(nonzero[0]), int(nonzero[-1])
        counts, offset = counts[first : last + 1], offset + first
    else:
        counts, offset = counts[:0], 0
    largest = int(counts.max()) if counts.size else 0
    # The narrowest width that holds every count: less to store and to read.
    width = 2 if largest < _UINT16_LIMIT else 4 if largest < _UINT32_LIMIT else 8
    header = _HEADER.pack(_MAGIC, _VERSION, bins.relative_accuracy, offset, bins.zero_count, width)
    body: bytes = counts.astype(_DTYPES[width]).tobytes()
    return header + body


def _header(data: bytes) -> tuple[float, int, int, int, int]:
    """(relative accuracy, offset, zero count, count width, bucket count), validated."""
    if len(data) < _HEADER.size:
        raise BinsError(f"rollup sketch of {len(data)} bytes is shorter than its header")
    magic, version, accuracy, offset, zero, width = _HEADER.unpack_from(data)
    if magic != _MAGIC:
        raise BinsError(f"rollup sketch: bad magic byte {magic:#x}")
    if version != _VERSION:
        raise BinsError(f"rollup sketch: unsupported version {version}")
    if not (math.isfinite(accuracy) and 0 < accuracy < 1):
        raise BinsError(f"rollup sketch: relative accuracy {accuracy!r} is not in (0, 1)")
    if width not in _DTYPES:
        raise BinsError(f"rollup sketch: count width {width} is not 2, 4 or 8")
    body = len(data) - _HEADER.size
    if body % width:
        raise BinsError(f"rollup sketch: {body} bytes of counts are not a multiple of {width}")
    return accuracy, offset, zero, width, body // width


def decode(data: bytes) -> Bins:
    """Strict inverse of :func:`encode`."""
    accuracy, offset, zero, width, _ = _header(data)
    # A read-only view, no copy: readers add it into arrays of their own.
    counts = np.frombuffer(data, dtype=_DTYPES[width], offset=_HEADER.size)
    return Bins(accuracy, offset, counts, zero)


@dataclass(frozen=True, slots=True, eq=False)
class MergedBins:
    """Per group: counts of buckets ``low .. low + width - 1`` and the zero count."""

    relative_accuracy: float
    low: int
    counts: npt.NDArray[np.float64]  # groups x width; float64 is exact up to 2**53
    zero: npt.NDArray[np.float64]

    def totals(self) -> npt.NDArray[np.float64]:
        totals: npt.NDArray[np.float64] = self.zero + self.counts.sum(axis=1)
        return totals

    def quantiles(
        self,
        q: float,
        mins: Sequence[float] | npt.NDArray[np.float64],
        maxs: Sequence[float] | npt.NDArray[np.float64],
    ) -> list[float | None]:
        """Lower q-quantile per group (None for an empty group), as DDSketch.quantile."""
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"quantile must be between 0 and 1, got {q!r}")
        totals = self.totals()
        if not totals.size:
            return []
        rank = np.floor(q * np.maximum(totals - 1, 0))
        cumulative = self.zero[:, None] + np.cumsum(self.counts, axis=1)
        position = np.argmax(cumulative > rank[:, None], axis=1) if self.counts.shape[1] else 0
        gamma = (1 + self.relative_accuracy) / (1 - self.relative_accuracy)
        values = 2.0 * np.power(gamma, self.low + position) / (gamma + 1.0)
        estimate = np.where(rank < self.zero, 0.0, values)
        low, high = np.asarray(mins, dtype=np.float64), np.asarray(maxs, dtype=np.float64)
        estimate = np.minimum(np.maximum(estimate, low), high)
        estimate = np.where(rank == 0, low, estimate)
        estimate = np.where(rank == totals - 1, high, estimate)
        return [float(v) if n > 0 else None for v, n in zip(estimate, totals, strict=True)]


def merge_groups(
    group_ids: Sequence[int],
    sketches: Sequence[Bins | None],
    groups: int,
    max_bins: int = DEFAULT_MAX_BINS,
) -> MergedBins | None:
    """Add ``sketches[k]`` into group ``group_ids[k]``; None when there is no sketch at all.

    Sketches of another relative accuracy than the most common one cannot be
    merged; they are left out (their requests still count elsewhere). Like
    DDSketch, at most ``max_bins`` buckets are kept: lower ones fold into the
    lowest kept bucket.
    """
    present = [(g, s) for g, s in zip(group_ids, sketches, strict=True) if s is not None]
    if not present:
        return None
    accuracy = Counter(s.relative_accuracy for _, s in present).most_common(1)[0][0]
    usable = [(g, s) for g, s in present if s.relative_accuracy == accuracy]
    if len(usable) < len(present):
        logger.warning(
            "%s latency sketches of another relative accuracy than %s left out of a merge",
            len(present) - len(usable),
            accuracy,
        )
    lengths = np.fromiter((s.counts.size for _, s in usable), dtype=np.int64, count=len(usable))
    offsets = np.fromiter((s.offset for _, s in usable), dtype=np.int64, count=len(usable))
    zero = np.zeros(groups, dtype=np.float64)
    np.add.at(zero, [g for g, _ in usable], [float(s.zero_count) for _, s in usable])
    filled = lengths > 0
    if not filled.any():
        return MergedBins(accuracy, 0, np.zeros((groups, 0), dtype=np.float64), zero)
    high = int((offsets + lengths - 1)[filled].max())
    low = max(int(offsets[filled].min()), high - max_bins + 1)
    width = high - low + 1
    flat = np.concatenate([s.counts for _, s in usable]).astype(np.float64)
    starts = np.repeat(np.cumsum(lengths) - lengths, lengths)
    index = np.arange(flat.size) - starts + np.repeat(offsets, lengths)
    position = np.maximum(index, low) - low
    group = np.repeat(np.asarray([g for g, _ in usable], dtype=np.int64), lengths)
    summed = np.bincount(group * width + position, weights=flat, minlength=groups * width)
    counts = summed.astype(np.float64, copy=False).reshape(groups, width)
    return MergedBins(accuracy, low, counts, zero)


def merge_groupings(
    groupings: Sequence[tuple[Sequence[int], int]],
    sketches: Sequence[Bins | None],
    max_bins: int = DEFAULT_MAX_BINS,
) -> list[MergedBins] | None:
    """Like :func:`merge_groups` for several groupings of the same sketches at once.

    ``groupings`` holds (group id of every sketch, number of groups). Each
    sketch is decoded once and added with one slice per grouping, which
    beats expanding every bucket of every row when rows are many.
    """
    present = [k for k, s in enumerate(sketches) if s is not None]
    if not present:
        return None
    accuracy = Counter(sketches[k].relative_accuracy for k in present).most_common(1)[0][0]  # type: ignore[union-attr]
    usable = [k for k in present if sketches[k].relative_accuracy == accuracy]  # type: ignore[union-attr]
    if len(usable) < len(present):
        logger.warning(
            "%s latency sketches of another relative accuracy than %s left out of a merge",
            len(present) - len(usable),
            accuracy,
        )
    parts = [(k, sketches[k]) for k in usable]
    filled = [(k, b) for k, b in parts if b is not None and b.counts.size]
    high = max((b.offset + b.counts.size - 1 for _, b in filled), default=0)
    low = max(min((b.offset for _, b in filled), default=0), high - max_bins + 1)
    width = high - low + 1 if filled else 0
    sums = [np.zeros((size, width), dtype=np.float64) for _, size in groupings]
    zeros = [np.zeros(size, dtype=np.float64) for _, size in groupings]
    for k, bins in parts:
        assert bins is not None
        counts, offset = bins.counts, bins.offset
        if counts.size and offset < low:  # fold buckets below the kept span, as DDSketch does
            cut = low - offset
            counts = counts[cut:].copy()
            counts[0] += bins.counts[:cut].sum()
            offset = low
        start = offset - low
        for (ids, _), matrix, zero in zip(groupings, sums, zeros, strict=True):
            row = matrix[ids[k]]
            row[start : start + counts.size] += counts
            zero[ids[k]] += bins.zero_count
    return [MergedBins(accuracy, low, m, z) for m, z in zip(sums, zeros, strict=True)]


def bucket_span(blob: bytes) -> tuple[int, int]:
    """(first bucket, bucket count) of an encoded sketch, from its header alone."""
    _, offset, _, _, size = _header(blob)
    return offset, size


def merge_encoded(
    blobs: Sequence[bytes | None],
    group_ids: Sequence[int],
    groups: int,
    max_bins: int = DEFAULT_MAX_BINS,
) -> MergedBins | None:
    """:func:`merge_groups` straight from :func:`encode` bytes, for many rows.

    One header parse, one ``frombuffer`` view and one slice add per blob, and
    no intermediate objects: the reader of 30 days of hourly rows spends its
    time here.
    """
    parsed: list[tuple[int, float, int, int, int, bytes]] = []
    for blob, group in zip(blobs, group_ids, strict=True):
        if blob is None:
            continue
        accuracy, offset, zero_count, _, size = _header(blob)
        parsed.append((group, accuracy, offset, zero_count, size, blob))
    if not parsed:
        return None
    accuracy = Counter(p[1] for p in parsed).most_common(1)[0][0]
    usable = [p for p in parsed if p[1] == accuracy]
    if len(usable) < len(parsed):
        logger.warning(
            "%s latency sketches of another relative accuracy than %s left out of a merge",
            len(parsed) - len(usable),
            accuracy,
        )
    filled = [p for p in usable if p[4]]
    high = max((p[2] + p[4] - 1 for p in filled), default=0)
    low = max(min((p[2] for p in filled), default=0), high - max_bins + 1)
    width = high - low + 1 if filled else 0
    counts = np.zeros((groups, width), dtype=np.float64)
    zero = np.zeros(groups, dtype=np.float64)
    for group, _, offset, zeros, size, blob in usable:
        zero[group] += zeros
        if not size:
            continue
        view = np.frombuffer(blob, dtype=_DTYPES[blob[_HEADER.size - 1]], offset=_HEADER.size)
        if offset < low:  # fold buckets below the kept span, as DDSketch does
            cut = low - offset
            counts[group, 0] += view[:cut].sum()
            view, offset = view[cut:], low
        start = offset - low
        counts[group, start : start + view.size] += view
    return MergedBins(accuracy, low, counts, zero)


def merge_all(sketches: Sequence[Bins | None]) -> Bins | None:
    """One sketch of all of them (None without any)."""
    merged = merge_groups([0] * len(sketches), sketches, 1)
    if merged is None:
        return None
    counts = np.rint(merged.counts[0]).astype(np.uint64)
    return Bins(merged.relative_accuracy, merged.low, counts, int(merged.zero[0]))
