"""Uncertainty over seeds and runs: bootstrap and t intervals, paired tests, Holm correction."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from flowstudy.errors import ConfigError, DataError
from flowstudy.metrics.seeding import derived_rng

WILCOXON_MIN_N = 6
"""Below this, Wilcoxon's exact p-value cannot reach 0.05 (two-sided; n = 5 gives 0.0625)."""


def _values(values: Sequence[float] | np.ndarray, minimum: int, name: str = "values") -> np.ndarray:
    v = np.asarray(values, dtype=np.float64).ravel()
    if len(v) < minimum:
        raise DataError(f"{name} needs at least {minimum} values; got {len(v)}")
    if not np.isfinite(v).all():
        raise DataError(f"{name} holds non-finite values")
    return v


def _check_alpha(alpha: float) -> None:
    if not 0.0 < alpha < 1.0:
        raise ConfigError(f"alpha must lie in (0, 1); got {alpha}")


def bootstrap_ci(
    values: Sequence[float] | np.ndarray,
    statistic: Callable[..., float] = np.mean,
    n_boot: int = 2000,
    alpha: float = 0.05,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap (1 - alpha) interval of ``statistic`` of ``values`` [n] (Efron 1979).

    ``statistic`` is called as ``statistic(resamples, axis=-1)`` on an [n_boot, n] array when
    it accepts ``axis`` (numpy reductions do), else once per resample.
    """
    _check_alpha(alpha)
    v = _values(values, 2)
    idx = derived_rng(seed, "bootstrap").integers(0, len(v), size=(n_boot, len(v)))  # [n_boot, n]
    resamples = v[idx]
    try:
        stats = np.asarray(statistic(resamples, axis=-1), dtype=np.float64)
    except TypeError:
        stats = np.array([statistic(r) for r in resamples], dtype=np.float64)
    lo, hi = np.quantile(stats, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


@dataclass(frozen=True)
class MeanCI:
    """Mean of n values with its Student-t (1 - alpha) interval; lo = hi = NaN when n = 1."""

    mean: float
    lo: float
    hi: float
    std: float
    n: int


def mean_ci(values: Sequence[float] | np.ndarray, alpha: float = 0.05) -> MeanCI:
    """mean ± t_{1-alpha/2, n-1} s / sqrt(n) over ``values`` [n] (e.g. one value per seed)."""
    from scipy import stats

    _check_alpha(alpha)
    v = _values(values, 1)
    n, mean = len(v), float(v.mean())
    if n == 1:
        return MeanCI(mean, float("nan"), float("nan"), float("nan"), 1)
    sd = float(v.std(ddof=1))
    half = float(stats.t.ppf(1 - alpha / 2, n - 1)) * sd / np.sqrt(n)
    return MeanCI(mean, mean - half, mean + half, sd, n)


@dataclass(frozen=True)
class PairedTest:
    """Two-sided paired test of a vs b; ``test`` is "wilcoxon" or "paired_t"."""

    test: str
    statistic: float
    pvalue: float
    n: int
    mean_difference: float


def paired_test(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> PairedTest:
    """Paired two-sided test of a [n] against b [n], matched by seed.

    Wilcoxon signed-rank when n >= :data:`WILCOXON_MIN_N` (no normality assumption),
    else the paired t-test (the only option that can reject with so few pairs; it assumes
    roughly normal differences). All-zero differences give p = 1.
    """
    from scipy import stats

    x, y = _values(a, 2, "a"), _values(b, 2, "b")
    if len(x) != len(y):
        raise DataError(f"a and b must pair up: got {len(x)} and {len(y)} values")
    d = x - y
    n, mean_diff = len(d), float(d.mean())
    test = "wilcoxon" if n >= WILCOXON_MIN_N else "paired_t"
    if np.all(d == 0):
        return PairedTest(test, 0.0, 1.0, n, 0.0)
    res = stats.wilcoxon(x, y) if test == "wilcoxon" else stats.ttest_rel(x, y)
    pvalue = float(res.pvalue) if np.isfinite(res.pvalue) else 1.0  # constant non-zero d: t undefined
    return PairedTest(test, float(res.statistic), pvalue, n, mean_diff)


def holm(pvalues: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm–Bonferroni adjusted p-values [m] in the input order (Holm 1979).

    With p_(1) <= ... <= p_(m): adj_(i) = max_{j <= i} min(1, (m - j + 1) p_(j)). Rejecting
    where adj <= alpha controls the family-wise error rate at alpha.
    """
    p = _values(pvalues, 1, "pvalues")
    if (p < 0).any() or (p > 1).any():
        raise DataError("p-values must lie in [0, 1]")
    m = len(p)
    order = np.argsort(p, kind="stable")
    scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])  # (m - j + 1) p_(j), j = 1..m
    adjusted = np.empty(m)
    adjusted[order] = np.maximum.accumulate(scaled)
    return adjusted
