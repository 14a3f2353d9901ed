"""Statistics for the analysis: trend test, robust slope, change points, forecasts.

- :func:`mann_kendall`: the Mann-Kendall trend test, computed as Kendall's
  tau-b of the values against time (scipy handles ties in the values), with
  the Hamed-Rao (1998) variance correction for autocorrelation. Neighbouring
  buckets of a monitoring series are correlated (a slow minute is followed by
  another), which makes the plain test far too eager; the correction widens
  the variance of S by n/n*, estimated from the significant lags of the
  detrended series' autocorrelation. We detrend the *ranks*, by least
  squares (the paper detrends the values by Theil-Sen), so the whole test
  depends on ranks only: it is invariant under any strictly increasing
  transform of the values, like the plain test. The ratio is never taken
  below 1 (negative autocorrelation does not make a trend more significant
  here: we prefer a quiet report). The correction helps but stays liberal
  for strong autocorrelation, as known for Hamed-Rao: measured on AR(1)
  noise without trend, n=100, alpha=0.05, false trends fall from 45 % to 23 %
  at phi=0.7 and from 15 % to 11 % at phi=0.3 (n=300, phi=0.7: 36 % -> 16 %).
  The minimum practical change the trend verdicts also require (trend.py)
  removes most of the rest.
- :func:`sens_slope`: the Theil-Sen slope, intercept the median residual.
- :func:`hours_until`: where a straight line reaches a level (exhaustion
  forecasts).
- :func:`change_points`: binary segmentation of the mean (least-squares cost,
  BIC-like penalty from a robust noise estimate), each break tested with
  Welch's t-test between its two adjacent segments. It is the same search as
  ``ruptures.Binseg(model="l2")``, vectorised with prefix sums because the
  rules run it on every endpoint's series (ruptures needs ~70 ms per 720-point
  series, this ~1 ms).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import stats

FloatArray = npt.NDArray[np.float64]
# What the public functions take: any sequence of numbers, numpy arrays included.
Numbers = Sequence[float] | npt.NDArray[np.floating[Any]]

MIN_POINTS = 3
# Change-point penalty, in units of sigma^2 log n (see change_points).
PENALTY_FACTOR = 5.0
# Significance of a lag in the Hamed-Rao autocorrelation (two-sided 5 %).
_LAG_Z = 1.959963984540054
# MAD of a normal sample is 0.6745 sigma; first differences have sqrt(2) sigma.
_MAD_TO_SIGMA = 1 / (0.6744897501960817 * math.sqrt(2))


@dataclass(frozen=True, slots=True)
class MannKendall:
    n: int
    tau: float  # Kendall's tau-b of values against time, in [-1, 1]
    p_value: float  # two-sided, after the autocorrelation correction
    variance_ratio: float  # Hamed-Rao n/n*; 1.0 = no correction applied


@dataclass(frozen=True, slots=True)
class Line:
    slope: float  # value units per time unit
    intercept: float  # value at time 0

    def at(self, time: float) -> float:
        return self.intercept + self.slope * time


@dataclass(frozen=True, slots=True)
class ChangePoint:
    index: int  # first point of the new segment
    mean_before: float
    mean_after: float
    p_value: float  # Welch's t-test, segment before vs segment after
    segment_end: int  # one past the last point of the "after" segment


def _arrays(times: Numbers, values: Numbers) -> tuple[FloatArray, FloatArray]:
    t = np.asarray(times, dtype=np.float64)
    y = np.asarray(values, dtype=np.float64)
    if t.shape != y.shape or t.ndim != 1:
        raise ValueError(f"times ({t.shape}) and values ({y.shape}) must be 1-d of equal length")
    if len(y) < MIN_POINTS:
        raise ValueError(f"need at least {MIN_POINTS} points, got {len(y)}")
    if not (np.all(np.isfinite(t)) and np.all(np.isfinite(y))):
        raise ValueError("times and values must be finite numbers")
    if np.any(np.diff(t) <= 0):
        raise ValueError("times must be strictly increasing")
    return t, y


def mann_kendall(
    times: Numbers, values: Numbers, *, correct_autocorrelation: bool = True
) -> MannKendall:
    """Two-sided Mann-Kendall test of ``values`` for a monotonic trend in ``times``."""
    t, y = _arrays(times, values)
    n = len(y)
    if np.ptp(y) == 0:
        return MannKendall(n, 0.0, 1.0, 1.0)
    result = stats.kendalltau(t, y, method="asymptotic")
    tau, p_value = float(result.statistic), float(result.pvalue)
    ratio = hamed_rao_ratio(t, y) if correct_autocorrelation else 1.0
    if ratio > 1.0:
        # Back to the normal score, widen its variance, back to a p-value.
        z = float(stats.norm.isf(p_value / 2)) / math.sqrt(ratio)
        p_value = float(2 * stats.norm.sf(z))
    return MannKendall(n, tau, min(1.0, p_value), ratio)


def hamed_rao_ratio(t: FloatArray, y: FloatArray) -> float:
    """n/n*: how much autocorrelation inflates Var(S); >= 1."""
    n = len(y)
    if n < MIN_POINTS:
        return 1.0
    ranks = stats.rankdata(y)
    # Ranks have no outliers, so least squares detrends them as well as Theil-Sen, in O(n).
    residuals = ranks - float(np.polyfit(t, ranks, 1)[0]) * t
    residuals = residuals - residuals.mean()
    energy = float(residuals @ residuals)
    # A perfectly monotonic series leaves only float dust: nothing to correct.
    if energy <= 1e-9 * n * (n * n - 1) / 12:
        return 1.0
    acf = np.correlate(residuals, residuals, mode="full")[n:] / energy  # lags 1..n-1
    lags = np.arange(1, n, dtype=np.float64)
    weights = (n - lags) * (n - lags - 1) * (n - lags - 2)
    significant = np.abs(acf) > _LAG_Z / math.sqrt(n)
    ratio = 1 + 2 / (n * (n - 1) * (n - 2)) * float(np.sum(weights * acf * significant))
    return max(1.0, ratio)


def sens_slope(times: Numbers, values: Numbers) -> Line:
    """Theil-Sen line: the median of pairwise slopes, intercept the median residual."""
    t, y = _arrays(times, values)
    return _theil_sen(t, y)


@functools.lru_cache(maxsize=4)
def _pairs(n: int) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    left, right = np.triu_indices(n, k=1)
    return left, right


def _theil_sen(t: FloatArray, y: FloatArray) -> Line:
    # scipy.stats.theilslopes also sorts for a confidence interval we do not
    # use: 15 ms per 720 points against 3 ms here (np.median partitions).
    # n(n-1)/2 slopes in memory: 0.5 M for the 720 points of a 30-day range.
    left, right = _pairs(len(t))
    slope = float(np.median((y[right] - y[left]) / (t[right] - t[left])))
    return Line(slope, float(np.median(y - slope * t)))


def hours_until(line: Line, level: float, now: float) -> float | None:
    """Time from ``now`` until ``line`` reaches ``level``; 0 if already there, None if never."""
    current = line.at(now)
    if current >= level:
        return 0.0
    if line.slope <= 0:
        return None
    return (level - current) / line.slope


def noise_sigma(values: FloatArray) -> float:
    """Robust noise level: MAD of first differences (a step barely moves it)."""
    if len(values) < 2:
        return 0.0
    diffs = np.diff(values)
    return float(np.median(np.abs(diffs - np.median(diffs)))) * _MAD_TO_SIGMA


def _best_split(y: FloatArray, min_size: int) -> tuple[int, float] | None:
    """The split index minimising the two segments' squared error, and the gain."""
    n = len(y)
    if n < 2 * min_size:
        return None
    centred = y - y.mean()  # keeps the prefix sums well conditioned
    sums = np.concatenate(([0.0], np.cumsum(centred)))
    squares = np.concatenate(([0.0], np.cumsum(centred * centred)))
    k = np.arange(min_size, n - min_size + 1)
    left = squares[k] - sums[k] ** 2 / k
    right = (squares[n] - squares[k]) - (sums[n] - sums[k]) ** 2 / (n - k)
    total = squares[n] - sums[n] ** 2 / n
    costs = left + right
    best = int(np.argmin(costs))
    return int(k[best]), float(total - costs[best])


def _segment(y: FloatArray, penalty: float, min_size: int) -> list[int]:
    """Breakpoints of binary segmentation: split while a split gains more than ``penalty``."""
    breaks: list[int] = []
    pending = [(0, len(y))]
    # Each split consumes at least min_size points, so this loop is bounded by n.
    while pending:
        start, end = pending.pop()
        found = _best_split(y[start:end], min_size)
        if found is None or found[1] <= penalty:
            continue
        cut = start + found[0]
        breaks.append(cut)
        pending += [(start, cut), (cut, end)]
    return sorted(breaks)


def _welch_p(before: FloatArray, after: FloatArray) -> float:
    if np.ptp(before) == 0 and np.ptp(after) == 0:
        return 1.0 if before[0] == after[0] else 0.0
    result = stats.ttest_ind(before, after, equal_var=False)
    p_value = float(result.pvalue)
    return 1.0 if math.isnan(p_value) else p_value


def change_points(
    values: Numbers, *, min_size: int | None = None, penalty: float | None = None
) -> tuple[ChangePoint, ...]:
    """Shifts in the mean of ``values``, oldest first.

    ``min_size`` (default max(3, n/20)) keeps one spike from being a segment
    of its own; ``penalty`` defaults to 5 sigma^2 log n with sigma the robust
    noise level, so noise alone rarely splits (measured on normal noise: 0.5 %
    of 30-point series, none of 200 points or more; 3 sigma^2 log n, the usual
    BIC-like choice, split 4 % of 30-point series).
    """
    y = np.asarray(values, dtype=np.float64)
    if y.ndim != 1 or not np.all(np.isfinite(y)):
        raise ValueError("values must be a 1-d sequence of finite numbers")
    n = len(y)
    size = min_size if min_size is not None else max(3, n // 20)
    if size < 1:
        raise ValueError(f"min_size must be >= 1, got {size}")
    if n < 2 * size:
        return ()
    sigma = max(noise_sigma(y), 1e-9 * (float(np.mean(np.abs(y))) + 1.0))
    cost = penalty if penalty is not None else PENALTY_FACTOR * sigma * sigma * math.log(n)
    bounds = [0, *_segment(y, cost, size), n]
    found: list[ChangePoint] = []
    for i in range(1, len(bounds) - 1):
        before_start, cut, after_end = bounds[i - 1], bounds[i], bounds[i + 1]
        before, after = y[before_start:cut], y[cut:after_end]
        p_value = _welch_p(before, after)
        found.append(
            ChangePoint(cut, float(before.mean()), float(after.mean()), p_value, after_end)
        )
    return tuple(found)
