"""Samples kept in columns: the collector's form of a columnar batch.

A batch sent as ``sample_columns`` names each distinct name, unit and label
set once and then carries per-sample index, value and time columns.
:class:`SampleTable` keeps exactly that, so the hot path can work column by
column (validation, series ids, the rows written) with C-level ``map`` and
``zip`` instead of building one :class:`Sample` per sample. It is still a
``Sequence[Sample]``: code that wants samples one by one iterates it and gets
the same tuples the row form gives, equal to them in every way.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import repeat
from typing import overload

from dealerpulse.model import Labels, Sample

# Sample is a NamedTuple whose generated __new__ is Python code; the tuple
# constructor called directly builds the same object in a fraction of the time.
_new_tuple = tuple.__new__


@dataclass(frozen=True, slots=True, eq=False)
class SampleTable(Sequence[Sample]):
    """Sample i is (names[name_index[i]], values[i], units[unit_index[i]],
    times[i], label_sets[labels_index[i]]).

    The constructor trusts its caller (the collector's codec checks that the
    columns have one entry per value and every index is in its dictionary);
    :meth:`checked` builds one with those checks.
    """

    names: tuple[str, ...]
    units: tuple[str, ...]
    label_sets: tuple[Labels, ...]
    name_index: tuple[int, ...]
    unit_index: tuple[int, ...]
    labels_index: tuple[int, ...]
    values: tuple[float, ...]
    times: tuple[int, ...]

    @classmethod
    def of(cls, samples: Sequence[Sample]) -> SampleTable:
        """The table of row-form samples (tests, and encoders that have rows)."""
        names: dict[str, int] = {}
        units: dict[str, int] = {}
        label_sets: dict[Labels, int] = {}
        name_index = tuple(names.setdefault(s.name, len(names)) for s in samples)
        unit_index = tuple(units.setdefault(s.unit, len(units)) for s in samples)
        labels_index = tuple(label_sets.setdefault(s.labels, len(label_sets)) for s in samples)
        return cls(
            names=tuple(names),
            units=tuple(units),
            label_sets=tuple(label_sets),
            name_index=name_index,
            unit_index=unit_index,
            labels_index=labels_index,
            values=tuple(s.value for s in samples),
            times=tuple(s.time_ms for s in samples),
        )

    @property
    def dictionaries(self) -> tuple[tuple[str, ...], tuple[Labels, ...]]:
        """(names, label_sets): what the series of an index pair depend on.

        An agent sends the same metrics in the same order every interval, so
        consecutive batches of one agent usually have equal dictionaries and
        anything derived per index pair can be reused.
        """
        return self.names, self.label_sets

    def series_pairs(self) -> Iterator[tuple[int, int]]:
        """(name index, labels index) of every sample, in order."""
        return zip(self.name_index, self.labels_index, strict=True)

    def has_distinct_dictionaries(self) -> bool:
        """No name and no label set listed twice: then index pairs identify series."""
        return len(set(self.names)) == len(self.names) and len(set(self.label_sets)) == len(
            self.label_sets
        )

    def __len__(self) -> int:
        return len(self.values)

    def __iter__(self) -> Iterator[Sample]:
        rows = zip(
            map(self.names.__getitem__, self.name_index),
            self.values,
            map(self.units.__getitem__, self.unit_index),
            self.times,
            map(self.label_sets.__getitem__, self.labels_index),
            strict=True,
        )
        return map(_new_tuple, repeat(Sample), rows)

    @overload
    def __getitem__(self, index: int) -> Sample: ...

    @overload
    def __getitem__(self, index: slice) -> tuple[Sample, ...]: ...

    def __getitem__(self, index: int | slice) -> Sample | tuple[Sample, ...]:
        if isinstance(index, slice):
            return tuple(self)[index]
        return Sample(
            self.names[self.name_index[index]],
            self.values[index],
            self.units[self.unit_index[index]],
            self.times[index],
            self.label_sets[self.labels_index[index]],
        )

    def __eq__(self, other: object) -> bool:
        # Equal to any sequence of the same samples, a tuple of rows included:
        # the form a batch came in is not part of its content.
        if not isinstance(other, Sequence) or isinstance(other, str | bytes):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))

    def __hash__(self) -> int:
        return hash(tuple(self))

    def __repr__(self) -> str:
        return f"SampleTable({len(self)} samples, {len(self.names)} names)"
