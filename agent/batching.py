"""Splitting one interval's data into batches the collector will take.

Sizes are estimated from the data rather than encoded twice; the estimate
is an upper bound, so a chunk never encodes beyond the byte limit (plus the
batch's own header, counters and gaps).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from dealerpulse.model import EndpointStat, Sample

MAX_BATCH_ITEMS = 5000
MAX_BATCH_BYTES = 2 * 1024 * 1024


@dataclass(slots=True)
class Chunk:
    samples: list[Sample] = field(default_factory=list)
    endpoints: list[EndpointStat] = field(default_factory=list)
    size: int = 0

    def __len__(self) -> int:
        return len(self.samples) + len(self.endpoints)


def estimated_size(item: Sample | EndpointStat) -> int:
    """An upper bound of the item's share of the encoded batch."""
    if isinstance(item, Sample):
        labels = sum(_field(_field(_text(k)) + _field(_text(v))) for k, v in item.labels)
        body = _field(_text(item.name)) + _field(_text(item.unit)) + 9 + 11 + labels
        return _field(body)
    sketch = 0 if item.latency is None else _field(9 + 6 + 11 * len(item.latency.bin_counts) + 11)
    texts = (item.route, item.method, item.last_error, item.source)
    body = sum(_field(_text(t)) for t in texts) + 6 * 11 + 3 * 9 + sketch
    return _field(body + len(item.status_counts) * _field(6 + 11))


def _text(value: str) -> int:
    return len(value.encode("utf-8", "surrogatepass"))


def _field(payload: int) -> int:
    """Bytes of a length-delimited field: tag, length varint, payload."""
    return 1 + _varint_size(payload) + payload


def _varint_size(value: int) -> int:
    return max(1, (value.bit_length() + 6) // 7)


def split(
    samples: Sequence[Sample],
    endpoints: Sequence[EndpointStat] = (),
    max_items: int = MAX_BATCH_ITEMS,
    max_bytes: int = MAX_BATCH_BYTES,
) -> list[Chunk]:
    """Consecutive chunks of at most max_items items and about max_bytes each.

    Always at least one chunk (possibly empty: an empty batch still carries
    the agent's counters and pending gaps). An item larger than max_bytes
    gets a chunk of its own.
    """
    if max_items < 1 or max_bytes < 1:
        raise ValueError(f"max_items and max_bytes must be positive, got {max_items}, {max_bytes}")
    chunks = [Chunk()]
    items: list[Sample | EndpointStat] = [*samples, *endpoints]
    for item in items:
        size = estimated_size(item)
        current = chunks[-1]
        if len(current) >= max_items or (len(current) and current.size + size > max_bytes):
            current = Chunk()
            chunks.append(current)
        if isinstance(item, Sample):
            current.samples.append(item)
        else:
            current.endpoints.append(item)
        current.size += size
    return chunks
