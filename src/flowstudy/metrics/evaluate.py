"""One evaluation protocol for models, baselines and real held-out data.

Protocol (all sets already in one space, standardised with training statistics):

1. The held-out set is split ``n_splits`` times at random into a reference half A and a
   real stand-in half B (:func:`~flowstudy.metrics.splits.half_splits`).
2. Fidelity and novelty use all sample rows against A (and the training set), averaged over
   all ``n_splits`` splits.
3. The distribution metrics (C2ST AUC, MMD, density/coverage, Fréchet distance, moment
   errors) compare ``n_eval`` sample rows with A, averaged over the first ``n_dist_splits``
   splits. ``n_eval`` defaults to |B|, so the held-out reference row (B itself) is computed
   at the same sample size as every other row: its values are what real data scores, e.g.
   the Fréchet distance's small-sample floor. MMD kernels take their bandwidths from the
   training set (median heuristic x {0.5, 1, 2}), so every row and split uses the same kernels.

Every random choice derives from ``seed``; two sample sets evaluated with the same seed and
data see the same splits, subsample positions, folds and kernels.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from flowstudy.errors import ConfigError, DataError
from flowstudy.metrics.baselines import REFERENCE_ROW, baseline_samples
from flowstudy.metrics.c2st import c2st_auc
from flowstudy.metrics.distances import as_matrices, require_rows
from flowstudy.metrics.frechet import frechet_distance
from flowstudy.metrics.mmd import DEFAULT_SCALES, median_heuristic, mmd_rbf
from flowstudy.metrics.moments import moment_errors
from flowstudy.metrics.neighbours import NeighbourReference
from flowstudy.metrics.prdc import density_coverage
from flowstudy.metrics.seeding import derived_rng, derived_seed
from flowstudy.metrics.splits import HalfSplit, half_splits
from flowstudy.metrics.table import EvaluationTable

METRIC_GROUPS: dict[str, str] = {
    "fidelity": "neighbours",
    "novelty": "neighbours",
    "c2st_auc": "c2st",
    "mmd": "mmd",
    "density": "prdc",
    "coverage": "prdc",
    "frechet": "frechet",
    "norm_ratio": "moments",
    "mean_error": "moments",
    "std_error": "moments",
}
"""Metric name -> the computation that produces it."""

METRICS: tuple[str, ...] = tuple(METRIC_GROUPS)

SplitMetric = Callable[[Tensor, Tensor, int], dict[str, float]]
"""``(samples [n, D], reference A [m, D], split index) -> {metric: value}``."""


def _check_metrics(metrics: Sequence[str]) -> tuple[str, ...]:
    unknown = [m for m in metrics if m not in METRIC_GROUPS]
    if unknown or not metrics:
        raise ConfigError(f"unknown or no metric(s) {unknown}; valid: {', '.join(METRICS)}")
    return tuple(metrics)


class Evaluator:
    """Evaluates sample sets against fixed training and held-out data with one protocol.

    Parameters
    ----------
    train: [Nt, D]; heldout: [Nh, D] (Nh >= 4), same space.
    seed: splits, subsamples, classifier folds.
    n_splits: half-splits for fidelity and novelty.
    n_dist_splits: the first splits on which distribution metrics are averaged (at most n_splits).
    n_eval: sample rows per split for distribution metrics (default |B| = Nh // 2).
    metrics: names from :data:`METRICS`.
    k: neighbours for density/coverage.
    """

    def __init__(
        self,
        train: np.ndarray | Tensor,
        heldout: np.ndarray | Tensor,
        *,
        seed: int = 0,
        n_splits: int = 20,
        n_dist_splits: int = 5,
        n_eval: int | None = None,
        metrics: Sequence[str] = METRICS,
        k: int = 5,
    ) -> None:
        self.train, self.heldout = as_matrices(train=train, heldout=heldout)
        self.metrics = _check_metrics(metrics)
        self.seed, self.k = seed, k
        self.splits = half_splits(self.heldout.shape[0], n_splits, seed)
        if n_dist_splits < 1:
            raise ConfigError(f"n_dist_splits must be >= 1; got {n_dist_splits}")
        self.dist_splits = self.splits[: min(n_dist_splits, n_splits)]
        half = len(self.splits[0].real)
        self.n_eval = half if n_eval is None else int(n_eval)
        if not 2 <= self.n_eval <= half:
            raise ConfigError(f"n_eval must be in [2, |B| = {half}]; got {n_eval}")
        groups = {METRIC_GROUPS[m] for m in self.metrics}
        self._neighbours = NeighbourReference(self.train, self.heldout, self.splits) if "neighbours" in groups else None
        self._split_metrics = [fn for name, fn in self._registry().items() if name in groups]
        # one kernel for every row and split, from data independent of A, B and the samples
        med = median_heuristic(self.train, seed=self.seed) if "mmd" in groups else 1.0
        self._bandwidths = [med * s for s in DEFAULT_SCALES]

    def _registry(self) -> dict[str, SplitMetric]:
        return {
            "c2st": self._c2st,
            "mmd": lambda s, a, i: {"mmd": mmd_rbf(s, a, bandwidths=self._bandwidths).total},
            "prdc": lambda s, a, i: _fields(density_coverage(s, a, k=self.k), ("density", "coverage")),
            "frechet": lambda s, a, i: {"frechet": frechet_distance(s, a).value},
            "moments": lambda s, a, i: _fields(moment_errors(s, a), ("norm_ratio", "mean_error", "std_error")),
        }

    def _c2st(self, s: Tensor, a: Tensor, i: int) -> dict[str, float]:
        res = c2st_auc(s, a, seed=derived_seed(self.seed, "c2st", i))
        return {"c2st_auc": res.auc, "c2st_auc_std": res.auc_std}

    def _subsample(self, x: Tensor, i: int) -> Tensor:
        """A seeded subset of ``n_eval`` rows of ``x`` for split i (all of them if fewer)."""
        if x.shape[0] <= self.n_eval:
            return x
        idx = np.sort(derived_rng(self.seed, "eval-subsample", i).choice(x.shape[0], self.n_eval, replace=False))
        return x[torch.from_numpy(idx).to(x.device)]

    def _distribution_metrics(self, rows_for_split: Callable[[int, HalfSplit], Tensor]) -> dict[str, float]:
        """Mean over the distribution splits of every split metric of ``rows_for_split(i, split)``."""
        if not self._split_metrics:
            return {}
        per_split: list[dict[str, float]] = []
        for i, split in enumerate(self.dist_splits):
            s = self._subsample(rows_for_split(i, split), i)
            a = self.heldout[torch.from_numpy(split.reference).to(self.heldout.device)]
            merged: dict[str, float] = {}
            for fn in self._split_metrics:
                merged.update(fn(s, a, i))
            per_split.append(merged)
        return {k: float(np.mean([d[k] for d in per_split])) for k in per_split[0]}

    def _select(self, out: dict[str, float]) -> dict[str, float]:
        keep = set(self.metrics) | {f"{m}_std" for m in self.metrics}
        return {k: v for k, v in out.items() if k in keep}

    def evaluate(self, samples: np.ndarray | Tensor) -> dict[str, float]:
        """Metrics of ``samples`` [Ns, D] (Ns >= 2) as a flat dict (see :data:`METRICS`)."""
        (s,) = as_matrices(samples=samples)
        if s.shape[1] != self.heldout.shape[1]:
            raise DataError(f"samples must have D = {self.heldout.shape[1]}; got shape {tuple(s.shape)}")
        require_rows(s, 2, "samples")
        s = s.to(self.heldout.device)
        out: dict[str, float] = {}
        if self._neighbours is not None:
            out.update(self._neighbours.ratios(s).as_dict())
        out.update(self._distribution_metrics(lambda i, split: s))
        return self._select(out)

    def evaluate_heldout(self) -> dict[str, float]:
        """The same metrics for the real stand-in half B of each split (the reference row)."""
        out: dict[str, float] = {}
        if self._neighbours is not None:
            out.update(self._neighbours.heldout_ratios().as_dict())
        device = self.heldout.device
        out.update(self._distribution_metrics(lambda i, split: self.heldout[torch.from_numpy(split.real).to(device)]))
        return self._select(out)


def _fields(result: object, names: tuple[str, ...]) -> dict[str, float]:
    return {n: float(getattr(result, n)) for n in names}


def evaluate_samples(
    samples: np.ndarray | Tensor,
    train: np.ndarray | Tensor,
    heldout: np.ndarray | Tensor,
    *,
    seed: int = 0,
    n_splits: int = 20,
    n_dist_splits: int = 5,
    n_eval: int | None = None,
    metrics: Sequence[str] = METRICS,
) -> dict[str, float]:
    """Metrics of ``samples`` [Ns, D] against ``train`` [Nt, D] and ``heldout`` [Nh, D].

    See the module docstring for the protocol. Returns ``{metric: value}`` plus
    ``fidelity_std``, ``novelty_std`` (over splits) and ``c2st_auc_std`` (over folds, averaged
    over splits) when those metrics are requested.
    """
    ev = Evaluator(
        train, heldout, seed=seed, n_splits=n_splits, n_dist_splits=n_dist_splits, n_eval=n_eval, metrics=metrics
    )
    return ev.evaluate(samples)


def evaluate_with_baselines(
    samples: np.ndarray | Tensor,
    train: np.ndarray | Tensor,
    heldout: np.ndarray | Tensor,
    seed: int = 0,
    *,
    n_splits: int = 20,
    n_dist_splits: int = 5,
    metrics: Sequence[str] = METRICS,
    baselines: Sequence[str] | None = None,
) -> EvaluationTable:
    """Evaluate ``samples`` [Ns, D] and every baseline with one :class:`Evaluator`.

    Baselines draw Ns rows each from ``train`` (seeded by ``seed``); the ``heldout`` row is the
    real half B of each split. Distribution metrics use n_eval = min(Ns, |B|) rows for every
    row. The table's flags say when the model does not beat the Gaussian fit on fidelity or
    C2ST AUC.
    """
    (s,) = as_matrices(samples=samples)
    heldout_rows = heldout.shape[0]
    ev = Evaluator(
        train,
        heldout,
        seed=seed,
        n_splits=n_splits,
        n_dist_splits=n_dist_splits,
        n_eval=min(s.shape[0], heldout_rows // 2),
        metrics=metrics,
    )
    rows = {"model": ev.evaluate(s)}
    for name, x in baseline_samples(ev.train, s.shape[0], seed, names=baselines).items():
        rows[name] = ev.evaluate(x)
    rows[REFERENCE_ROW] = ev.evaluate_heldout()
    table = EvaluationTable(
        rows=rows,
        n_samples=s.shape[0],
        n_eval=ev.n_eval,
        n_train=ev.train.shape[0],
        n_heldout=heldout_rows,
        seed=seed,
        n_splits=n_splits,
        n_dist_splits=len(ev.dist_splits),
    )
    table.flags = table.compute_flags()
    return table
