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
4. Every metric ``m`` comes with ``m_std``: the standard deviation over the splits it was
   averaged over (what one split's value scatters by; the sanity check's CI unit,
   :mod:`flowstudy.metrics.sanity`).

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
from flowstudy.metrics.sanity import sanity_check
from flowstudy.metrics.seeding import derived_rng, derived_seed
from flowstudy.metrics.splits import HalfSplit, half_splits
from flowstudy.metrics.table import EvaluationTable

METRIC_GROUPS: dict[str, str] = {
    "fidelity": "neighbours",
    "novelty": "neighbours",
    "c2st_auc": "c2st",
    "c2st_knn_auc": "c2st_knn",
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
            "c2st": lambda s, a, i: self._c2st(s, a, i, "logistic", "c2st_auc"),
            "c2st_knn": lambda s, a, i: self._c2st(s, a, i, "knn_cosine", "c2st_knn_auc"),
            "mmd": lambda s, a, i: {"mmd": mmd_rbf(s, a, bandwidths=self._bandwidths).total},
            "prdc": lambda s, a, i: _fields(density_coverage(s, a, k=self.k), ("density", "coverage")),
            "frechet": lambda s, a, i: {"frechet": frechet_distance(s, a).value},
            "moments": lambda s, a, i: _fields(moment_errors(s, a), ("norm_ratio", "mean_error", "std_error")),
        }

    def _c2st(self, s: Tensor, a: Tensor, i: int, classifier: str, name: str) -> dict[str, float]:
        return {name: c2st_auc(s, a, seed=derived_seed(self.seed, "c2st", i), classifier=classifier).auc}

    def _subsample(self, x: Tensor, i: int) -> Tensor:
        """A seeded subset of ``n_eval`` rows of ``x`` for split i (all of them if fewer)."""
        if x.shape[0] <= self.n_eval:
            return x
        idx = np.sort(derived_rng(self.seed, "eval-subsample", i).choice(x.shape[0], self.n_eval, replace=False))
        return x[torch.from_numpy(idx).to(x.device)]

    def _distribution_splits(self, rows_for_split: Callable[[int, HalfSplit], Tensor]) -> dict[str, np.ndarray]:
        """metric -> [splits] values of every split metric of ``rows_for_split(i, split)``."""
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
        return {k: np.array([d[k] for d in per_split]) for k in per_split[0]}

    def split_values(self, samples: np.ndarray | Tensor) -> dict[str, np.ndarray]:
        """metric -> its value on each split it is measured on ([n_splits] for fidelity and
        novelty, [n_dist_splits] for the rest), for ``samples`` [Ns, D] (Ns >= 2)."""
        (s,) = as_matrices(samples=samples)
        if s.shape[1] != self.heldout.shape[1]:
            raise DataError(f"samples must have D = {self.heldout.shape[1]}; got shape {tuple(s.shape)}")
        require_rows(s, 2, "samples")
        s = s.to(self.heldout.device)
        out: dict[str, np.ndarray] = {}
        if self._neighbours is not None:
            out.update(_neighbour_splits(self._neighbours.ratios(s)))
        out.update(self._distribution_splits(lambda i, split: s))
        return {k: v for k, v in out.items() if k in self.metrics}

    def split_values_heldout(self) -> dict[str, np.ndarray]:
        """The same for the real stand-in half B of each split (the reference row)."""
        out: dict[str, np.ndarray] = {}
        if self._neighbours is not None:
            out.update(_neighbour_splits(self._neighbours.heldout_ratios()))
        device = self.heldout.device
        out.update(self._distribution_splits(lambda i, split: self.heldout[torch.from_numpy(split.real).to(device)]))
        return {k: v for k, v in out.items() if k in self.metrics}

    def evaluate(self, samples: np.ndarray | Tensor) -> dict[str, float]:
        """Metrics of ``samples`` [Ns, D] (Ns >= 2) as a flat dict (see :data:`METRICS`)."""
        return summarise_splits(self.split_values(samples))

    def evaluate_heldout(self) -> dict[str, float]:
        """The same metrics for the real stand-in half B of each split (the reference row)."""
        return summarise_splits(self.split_values_heldout())


def summarise_splits(values: dict[str, np.ndarray]) -> dict[str, float]:
    """{metric: mean over splits, metric_std: sample std over splits (0 for one split)}."""
    out: dict[str, float] = {}
    for k, v in values.items():
        out[k] = float(v.mean())
        out[f"{k}_std"] = float(v.std(ddof=1)) if len(v) > 1 else 0.0
    return out


def _neighbour_splits(r) -> dict[str, np.ndarray]:
    return {"fidelity": np.asarray(r.fidelity_per_split), "novelty": np.asarray(r.novelty_per_split)}


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

    See the module docstring for the protocol. Returns ``{metric: value, metric_std: spread
    over splits}`` for every requested metric.
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
    row. With all baselines, the table's ``sanity`` says which metrics order real < Gaussian
    fit < noise on this data (:mod:`flowstudy.metrics.sanity`); its flags say when the model
    does not beat the Gaussian fit on one of those.
    """
    (s,) = as_matrices(samples=samples)
    ev = Evaluator(
        train,
        heldout,
        seed=seed,
        n_splits=n_splits,
        n_dist_splits=n_dist_splits,
        n_eval=min(s.shape[0], heldout.shape[0] // 2),
        metrics=metrics,
    )
    per_split = {"model": ev.split_values(s), **baseline_split_values(ev, s.shape[0], seed, baselines)}
    return evaluation_table(ev, per_split, n_samples=s.shape[0], seed=seed)


def baseline_split_values(ev: Evaluator, n: int, seed: int, baselines: Sequence[str] | None = None) -> dict[str, dict[str, np.ndarray]]:
    """row -> metric -> per-split values of every baseline (``n`` rows each, drawn from ``ev.train``
    with ``seed``) and of the held-out reference row: what :func:`evaluate_with_baselines` adds beside
    the model, the same for every sample set of ``n`` rows evaluated by ``ev``."""
    rows = {name: ev.split_values(x) for name, x in baseline_samples(ev.train, n, seed, names=baselines).items()}
    rows[REFERENCE_ROW] = ev.split_values_heldout()
    return rows


def evaluation_table(ev: Evaluator, per_split: dict[str, dict[str, np.ndarray]], *, n_samples: int, seed: int) -> EvaluationTable:
    """The :class:`EvaluationTable` of per-split values (``per_split``: row -> metric -> [splits], the
    model's row ``"model"``), with its sanity check and flags."""
    rows = {name: summarise_splits(v) for name, v in per_split.items()}
    table = EvaluationTable(
        rows=rows,
        n_samples=n_samples,
        n_eval=ev.n_eval,
        n_train=ev.train.shape[0],
        n_heldout=ev.heldout.shape[0],
        seed=seed,
        n_splits=len(ev.splits),
        n_dist_splits=len(ev.dist_splits),
    )
    table.sanity = {m: check.to_dict() for m, check in sanity_check(per_split, ev.metrics).items()}
    table.flags = table.compute_flags()
    return table
