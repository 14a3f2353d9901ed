"""reporter.analysis.stats: trend test, Theil-Sen, forecasts and change points."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import pytest
import ruptures
from hypothesis import given, settings
from hypothesis import strategies as st

from reporter.analysis.stats import (
    Line,
    change_points,
    hours_until,
    mann_kendall,
    sens_slope,
)

ALPHA = 0.05
# Hypothesis runs derandomized where the data comes from a seeded RNG: no flakes.
steady = settings(derandomize=True, max_examples=60, deadline=None)

int_values = st.lists(st.integers(-1000, 1000), min_size=8, max_size=60)


def ar1(n: int, phi: float, rng: np.random.Generator) -> npt.NDArray[np.float64]:
    noise = rng.normal(0.0, 1.0, n + 50)
    out = np.zeros(n + 50)
    for i in range(1, n + 50):
        out[i] = phi * out[i - 1] + noise[i]
    return out[50:]


@given(int_values)
def test_mann_kendall_is_invariant_under_increasing_transforms(values: list[int]) -> None:
    times = list(range(len(values)))
    plain = mann_kendall(times, [float(v) for v in values])
    for transform in (lambda v: 3 * v + 7, lambda v: v**3, lambda v: math.exp(v / 200)):
        moved = mann_kendall(times, [float(transform(v)) for v in values])
        assert moved.tau == pytest.approx(plain.tau)
        assert moved.p_value == pytest.approx(plain.p_value)
        assert moved.variance_ratio == pytest.approx(plain.variance_ratio)


@given(st.lists(st.floats(-1e6, 1e6), min_size=8, max_size=80, unique=True))
def test_a_strictly_increasing_series_is_a_significant_upward_trend(values: list[float]) -> None:
    ordered = sorted(values)
    result = mann_kendall([float(i) for i in range(len(ordered))], ordered)
    assert result.tau == pytest.approx(1.0)
    assert result.p_value < ALPHA
    falling = mann_kendall([float(i) for i in range(len(ordered))], ordered[::-1])
    assert falling.tau == pytest.approx(-1.0)
    assert falling.p_value < ALPHA


@given(st.floats(-1e9, 1e9), st.integers(3, 100))
def test_a_constant_series_has_no_trend(level: float, n: int) -> None:
    result = mann_kendall(list(range(n)), [level] * n)
    assert result.tau == 0.0
    assert result.p_value == 1.0


def test_independent_noise_is_rarely_significant() -> None:
    rng = np.random.default_rng(20260302)
    rejected = sum(
        mann_kendall(range(100), rng.normal(0.0, 1.0, 100)).p_value < ALPHA for _ in range(200)
    )
    assert rejected <= 20  # 5 % expected; 10 % is far out in the binomial tail


def test_autocorrelation_correction_cuts_false_trends_in_correlated_noise() -> None:
    rng = np.random.default_rng(7)
    series = [ar1(100, 0.7, rng) for _ in range(150)]
    times = range(100)
    plain = sum(
        mann_kendall(times, y, correct_autocorrelation=False).p_value < ALPHA for y in series
    )
    corrected = sum(mann_kendall(times, y).p_value < ALPHA for y in series)
    assert corrected < 0.7 * plain
    assert all(mann_kendall(times, y).variance_ratio >= 1.0 for y in series)


def test_a_trend_in_correlated_noise_is_still_found() -> None:
    rng = np.random.default_rng(11)
    y = ar1(200, 0.5, rng) + 0.1 * np.arange(200)  # 20 units over the range, noise sd ~1.2
    assert mann_kendall(range(200), y).p_value < ALPHA


@pytest.mark.parametrize(
    ("times", "values", "message"),
    [
        ([0, 1, 2], [1, 2], "equal length"),
        ([0, 1], [1, 2], "at least 3"),
        ([0, 1, 2], [1, float("nan"), 2], "finite"),
        ([0, 2, 1], [1, 2, 3], "strictly increasing"),
    ],
)
def test_bad_input_is_refused_with_the_reason(
    times: list[float], values: list[float], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        mann_kendall(times, values)


@given(
    st.floats(-1e4, 1e4),
    st.floats(-1e3, 1e3).filter(lambda s: abs(s) > 1e-6),
    st.integers(3, 50),
)
def test_sens_slope_recovers_a_perfect_line(intercept: float, slope: float, n: int) -> None:
    times = [0.5 * i for i in range(n)]
    line = sens_slope(times, [intercept + slope * t for t in times])
    assert line.slope == pytest.approx(slope, rel=1e-6)
    assert line.intercept == pytest.approx(intercept, rel=1e-6, abs=1e-6 * abs(slope) * n)


def test_sens_slope_shrugs_off_outliers() -> None:
    values = [10.0 + 2.0 * i for i in range(30)]
    values[5], values[20] = 5000.0, -5000.0
    assert sens_slope(range(30), values).slope == pytest.approx(2.0)


@given(
    st.floats(0, 1e12),
    st.floats(1e-3, 1e9),
    st.floats(1, 1e3),
    st.floats(0, 100),
)
def test_forecast_of_a_perfect_line_hits_the_right_time(
    used: float, per_hour: float, hours_ahead: float, now: float
) -> None:
    line = Line(per_hour, used - per_hour * now)  # at `now` the line is at `used`
    total = used + per_hour * hours_ahead
    # Float rounding of the levels themselves, seen through the slope.
    rounding = 1e-12 * (abs(used) + abs(total)) / per_hour
    assert hours_until(line, total, now) == pytest.approx(hours_ahead, rel=1e-6, abs=rounding)


def test_forecast_when_already_full_or_never() -> None:
    assert hours_until(Line(1.0, 100.0), 50.0, now=0.0) == 0.0
    assert hours_until(Line(0.0, 10.0), 50.0, now=0.0) is None
    assert hours_until(Line(-1.0, 10.0), 50.0, now=0.0) is None


@steady
@given(
    st.integers(40, 200),
    st.floats(0.25, 0.75),
    st.floats(5, 20),
    st.integers(0, 2**32 - 1),
)
def test_change_point_found_near_a_planted_step(
    n: int, where: float, step_sigmas: float, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    cut = int(n * where)
    values = rng.normal(100.0, 5.0, n)
    values[cut:] += step_sigmas * 5.0
    found = change_points(values)
    assert found, "no change point"
    nearest = min(found, key=lambda c: abs(c.index - cut))
    assert abs(nearest.index - cut) <= 3
    assert nearest.mean_after - nearest.mean_before == pytest.approx(step_sigmas * 5, rel=0.25)
    assert nearest.p_value < 1e-6


@pytest.mark.parametrize("n", [30, 100, 300])
def test_noise_alone_rarely_has_a_change_point(n: int) -> None:
    rng = np.random.default_rng(n)
    split = sum(bool(change_points(rng.normal(100.0, 5.0, n))) for _ in range(200))
    assert split <= 4  # measured: about 0.5 % at n=30, none from 200 points up


def test_one_spike_is_not_a_shift_that_lasts() -> None:
    values = list(np.random.default_rng(3).normal(100.0, 5.0, 120))
    values[60] = 2000.0
    for change in change_points(values):
        # At most a short segment around the spike, and not a significant step.
        assert change.segment_end - change.index <= 6 or change.p_value > 0.01


@settings(derandomize=True, max_examples=20, deadline=None)
@given(st.integers(20, 150), st.floats(0.2, 0.8), st.integers(0, 2**32 - 1))
def test_the_best_split_is_the_one_ruptures_binseg_finds(n: int, where: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    values = rng.normal(0.0, 1.0, n)
    values[int(n * where) :] += 6.0
    ours = change_points(values, min_size=3, penalty=0.0)
    theirs = ruptures.Binseg(model="l2", min_size=3, jump=1).fit(values).predict(n_bkps=1)
    assert theirs[0] in [c.index for c in ours]


def test_a_clean_step_without_noise() -> None:
    (change,) = change_points([1.0] * 20 + [5.0] * 20)
    assert (change.index, change.mean_before, change.mean_after) == (20, 1.0, 5.0)
    assert change.p_value == 0.0
