"""Does a metric order the baselines the way it must, on the data at hand?

A sample metric can only rank models if it ranks what we know: real held-out rows nearer the
ideal than a Gaussian fit of the training set, and the Gaussian fit nearer than noise N(0, I)
(in the standardised space, the flow's source). The check reads one evaluation table's
baseline rows, computed by the same code on the same splits as the model:

    badness(heldout) < badness(gaussian) < badness(noise),

each step by a margin of at least :data:`MIN_MARGIN` CI half-widths. The rows are compared
split by split (every row of a table is measured on the same held-out half-splits, so the
split's own noise, e.g. the shared denominator of fidelity, cancels): with d_s the difference
in badness on split s, the margin is mean(d) over the half-width t_{0.975, n-1}·sd(d)/√n of
its 95 % Student-t interval. The splits of one held-out set overlap, so the interval measures
how much the verdict depends on the split, not on a fresh held-out set. Novelty must also give
copies of training rows a value near 0 (below :data:`COPIES_NOVELTY`).

A metric that fails is still shown, but configurations are not ranked by it, and the reason
is stated (e.g. a linear C2ST sees means, which the Gaussian fit and noise both match).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np

from flowstudy.metrics.table import BADNESS

MIN_MARGIN = 2.0
"""Each step of the ordering must exceed this many (pooled) CI half-widths."""

MARGIN_CAP = 1e6
"""Margins are capped here (a difference without spread, or an infinite one, e.g. density 0)."""

COPIES_NOVELTY = 0.1
"""Novelty of training copies must be below this (0 = exact copies)."""

ORDER = ("heldout", "gaussian", "noise")


@dataclass(frozen=True)
class MetricSanity:
    """The ordering check of one metric.

    values: the rows' means over splits (heldout, gaussian, noise); margins: (gaussian over
    heldout, noise over gaussian) in CI half-widths (NaN when undefined); passes: both margins
    >= the minimum (and copies' novelty near 0 for novelty); reason: why not, when it fails.
    """

    metric: str
    values: tuple[float, float, float]
    margins: tuple[float, float]
    passes: bool
    reason: str = ""

    def to_dict(self) -> dict:
        """JSON-ready fields; non-finite margins become None."""
        d = asdict(self)
        d["values"], d["margins"] = list(self.values), [m if math.isfinite(m) else None for m in self.margins]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> MetricSanity:
        """Inverse of :meth:`to_dict` (None margins back to NaN)."""
        margins = tuple(math.nan if m is None else float(m) for m in d["margins"])
        return cls(d["metric"], tuple(d["values"]), margins, bool(d["passes"]), d.get("reason", ""))


def _margin(better: np.ndarray, worse: np.ndarray, metric: str) -> float:
    """mean(d) / CI half-width of the mean of d = badness(worse) - badness(better), per split."""
    bad = np.vectorize(BADNESS[metric], otypes=[float])
    with np.errstate(invalid="ignore"):  # inf - inf: undefined, reported as NaN below
        d = bad(worse) - bad(better)  # [splits]
    if np.all(np.isposinf(d)):  # e.g. density 0 for every split of the worse row
        return MARGIN_CAP
    if not np.all(np.isfinite(d)) or len(d) < 2:
        return math.nan
    sd = float(d.std(ddof=1))
    if sd == 0.0:
        return math.copysign(MARGIN_CAP, float(d.mean())) if d.mean() != 0 else 0.0
    from scipy import stats

    half = float(stats.t.ppf(0.975, len(d) - 1)) * sd / math.sqrt(len(d))
    return float(np.clip(d.mean() / half, -MARGIN_CAP, MARGIN_CAP))


def _undefined(better: np.ndarray, worse: np.ndarray, metric: str) -> str:
    """Why :func:`_margin` of these per-split values is NaN, in words."""
    if min(len(better), len(worse)) < 2:
        return f"{min(len(better), len(worse))} split(s), a CI needs at least 2"
    bad = np.vectorize(BADNESS[metric], otypes=[float])
    with np.errstate(invalid="ignore"):
        d = bad(worse) - bad(better)
    return f"{metric} is undefined (NaN or infinite) on {int((~np.isfinite(d)).sum())} of {len(d)} splits"


def check_metric(per_split: dict[str, dict[str, np.ndarray]], metric: str, min_margin: float = MIN_MARGIN) -> MetricSanity:
    """The ordering check of ``metric`` from each row's per-split values (module docstring)."""
    rows = {r: np.asarray(per_split[r][metric], dtype=float) for r in ORDER}
    values = tuple(float(rows[r].mean()) for r in ORDER)
    margins = (_margin(rows["heldout"], rows["gaussian"], metric), _margin(rows["gaussian"], rows["noise"], metric))
    reasons = []
    steps = (("real held-out rows", "the Gaussian fit", "heldout", "gaussian"), ("the Gaussian fit", "noise", "gaussian", "noise"))
    for margin, (better, worse, b, w) in zip(margins, steps):
        if math.isnan(margin):
            reasons.append(f"{better} and {worse} cannot be ordered: {_undefined(rows[b], rows[w], metric)}")
        elif not margin >= min_margin:
            reasons.append(f"{better} beat{'s' if better.startswith('the') else ''} {worse} by {margin:.2g} CI half-widths (< {min_margin:g})")
    copies = per_split.get("copies", {}).get("novelty") if metric == "novelty" else None
    if copies is not None and float(np.mean(copies)) >= COPIES_NOVELTY:
        reasons.append(f"copies of training rows score novelty {float(np.mean(copies)):.3g} (>= {COPIES_NOVELTY})")
    return MetricSanity(metric, values, margins, not reasons, "; ".join(reasons))


def sanity_check(
    per_split: dict[str, dict[str, np.ndarray]], metrics: Sequence[str] | None = None, min_margin: float = MIN_MARGIN
) -> dict[str, MetricSanity]:
    """metric -> :class:`MetricSanity` for every metric (default: all in :data:`BADNESS`) that the
    heldout, gaussian and noise rows all have. ``per_split``: row -> metric -> [splits] values
    (:meth:`flowstudy.metrics.Evaluator.split_values`). {} when one of those rows is missing."""
    if not all(r in per_split for r in ORDER):
        return {}
    names = metrics if metrics is not None else tuple(BADNESS)
    return {m: check_metric(per_split, m, min_margin) for m in names if m in BADNESS and all(m in per_split[r] for r in ORDER)}


def passing(sanity: dict[str, MetricSanity | dict]) -> list[str]:
    """Names of the metrics that pass, in the given order."""
    return [m for m, s in sanity.items() if (s.passes if isinstance(s, MetricSanity) else s["passes"])]


__all__ = ["COPIES_NOVELTY", "MIN_MARGIN", "MetricSanity", "MARGIN_CAP", "check_metric", "passing", "sanity_check"]
