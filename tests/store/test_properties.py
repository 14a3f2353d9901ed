"""Property tests: exactly-once storage under any resends, and the pure helpers."""

from __future__ import annotations

import itertools
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector.store import SQLAlchemyMetricStore, sketch_from_json, sketch_to_json
from collector.store.dedup import Committed, classify
from collector.store.series import labels_from_json, labels_key
from dealerpulse.clock import from_unix_ms
from dealerpulse.model import LatencySketch, MetricBatch, WriteOutcome

from .store_factories import DEALER, NOW, T0, add_dealer, batch, sample

# (agent index, seq, content variant): few values, so that resends and conflicts are common.
writes = st.tuples(st.integers(0, 2), st.integers(1, 4), st.integers(0, 1))
groups = st.lists(st.lists(writes, min_size=1, max_size=6), min_size=1, max_size=5)
_examples = itertools.count()


def _variant_batch(prefix: str, agent: int, seq: int, variant: int) -> MetricBatch:
    count = 1 + (seq + variant) % 3
    points = tuple(
        sample(value=float(variant * 1000 + seq * 10 + i), time_ms=T0 + seq * 100 + i)
        for i in range(count)
    )
    return batch(f"{prefix}-agent-{agent}", seq, samples=points)


@settings(
    max_examples=30,
    deadline=None,
    # One store serves every example; each example writes under its own agent ids.
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(groups=groups)
def test_every_distinct_batch_is_stored_exactly_once(
    store: SQLAlchemyMetricStore, groups: list[list[tuple[int, int, int]]]
) -> None:
    if store.get_dealer(DEALER) is None:
        add_dealer(store)
    prefix = f"ex{next(_examples)}"
    first_variant: dict[tuple[int, int], int] = {}

    for group in groups:
        results = store.write_batches([_variant_batch(prefix, *w) for w in group], NOW)
        for (agent, seq, variant), result in zip(group, results, strict=True):
            key = (agent, seq)
            if key not in first_variant:
                first_variant[key] = variant
                expected = WriteOutcome.STORED
            elif first_variant[key] == variant:
                expected = WriteOutcome.DUPLICATE
            else:
                expected = WriteOutcome.CONFLICT
            assert result.outcome is expected, (key, variant)

    for agent in range(3):
        agent_id = f"{prefix}-agent-{agent}"
        kept = {seq: v for (a, seq), v in first_variant.items() if a == agent}
        expected_batches = {
            seq: len(_variant_batch(prefix, agent, seq, v).samples) for seq, v in kept.items()
        }
        assert store.committed_batches(agent_id) == expected_batches
        assert store.count_samples(agent_id) == sum(expected_batches.values())
    stored_values = sorted(
        p.value
        for p in store.query_samples(
            DEALER,
            "cpu.percent",
            from_unix_ms(T0),
            NOW + timedelta(days=1),
            agent_id=f"{prefix}-agent-0",
        )
    )
    expected_values = sorted(
        s.value
        for (agent, seq), v in first_variant.items()
        if agent == 0
        for s in _variant_batch(prefix, agent, seq, v).samples
    )
    assert stored_values == expected_values


@given(groups=groups, already=st.sets(st.tuples(st.integers(0, 2), st.integers(1, 4))))
def test_classify_stores_each_key_at_most_once(
    groups: list[list[tuple[int, int, int]]], already: set[tuple[int, int]]
) -> None:
    batches = [_variant_batch("p", *w) for group in groups for w in group]
    committed = {
        (f"p-agent-{a}", s): Committed(_variant_batch("p", a, s, 0).digest, 1) for a, s in already
    }

    results = classify(batches, committed)

    stored = [
        (b.agent_id, b.seq)
        for b, r in zip(batches, results, strict=True)
        if r.outcome is WriteOutcome.STORED
    ]
    assert len(stored) == len(set(stored))
    assert not set(stored) & set(committed)
    assert set(stored) | set(committed) == {(b.agent_id, b.seq) for b in batches} | set(committed)


label_sets = st.dictionaries(st.text(min_size=1, max_size=8), st.text(max_size=8), max_size=4)


@given(labels=label_sets, data=st.data())
def test_labels_key_is_the_same_for_any_order(labels: dict[str, str], data: st.DataObject) -> None:
    pairs = list(labels.items())
    shuffled = data.draw(st.permutations(pairs))

    assert labels_key(tuple(shuffled)) == labels_key(tuple(sorted(pairs)))
    assert labels_from_json(labels) == tuple(sorted(pairs))


@given(other=label_sets, labels=label_sets)
def test_different_label_sets_have_different_keys(
    labels: dict[str, str], other: dict[str, str]
) -> None:
    if labels != other:
        assert labels_key(tuple(labels.items())) != labels_key(tuple(other.items()))


sketches = st.builds(
    LatencySketch,
    relative_accuracy=st.floats(min_value=1e-4, max_value=0.5),
    offset=st.integers(-(2**31), 2**31 - 1),
    bin_counts=st.lists(st.integers(0, 2**63), max_size=50).map(tuple),
    zero_count=st.integers(0, 2**63),
)


@given(sketch=sketches)
def test_sketch_json_round_trips(sketch: LatencySketch) -> None:
    assert sketch_from_json(sketch_to_json(sketch)) == sketch


@pytest.mark.parametrize(
    ("document", "named"),
    [
        ([], "JSON object"),
        ({"ra": 1.5, "offset": 0, "bins": [], "zero": 0}, "'ra'"),
        ({"ra": 0.01, "offset": 0.5, "bins": [], "zero": 0}, "'offset'"),
        ({"ra": 0.01, "offset": 0, "bins": [1, -2], "zero": 0}, "bins\\[1\\]"),
        ({"ra": 0.01, "offset": 0, "bins": "1,2", "zero": 0}, "'bins'"),
        ({"ra": 0.01, "offset": 0, "bins": [], "zero": -1}, "'zero'"),
    ],
)
def test_a_bad_stored_sketch_is_refused_naming_the_field(document: object, named: str) -> None:
    with pytest.raises(ValueError, match=named):
        sketch_from_json(document)
