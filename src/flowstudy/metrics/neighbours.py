"""Nearest-neighbour fidelity and novelty ratios, averaged over random half-splits.

The held-out set is split at random into halves: a reference A and a real stand-in B
(disjoint, so real data is not compared with itself). For a sample set S:

    fidelity(S) = median_i min_j ||S_i - A_j|| / median_i min_j ||B_i - A_j||
    novelty(S)  = median_i min_j ||S_i - T_j|| / median_i min_j ||B_i - T_j||

with T the training set. Real held-out data scores 1.0 on both by definition. Fidelity
above 1 means samples lie further from real data than real data does; novelty near 0
means samples are copies of training rows. Each ratio is averaged over ``n_splits``
seeded half-splits (one split of a few hundred rows is noisy) and returned with its spread.

Fidelity below 1 is not better than 1: in high dimension a sample collapsed toward the
data mean is nearer to every real row than real rows are to each other.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from torch import Tensor

from flowstudy.errors import DataError
from flowstudy.metrics.distances import as_matrices, nearest_distances, nearest_distances_within
from flowstudy.metrics.splits import HalfSplit, half_splits, reference_masks


@dataclass(frozen=True)
class NeighbourRatios:
    """Fidelity and novelty ratios (1.0 = like real held-out data), mean and std over splits."""

    fidelity: float
    fidelity_std: float
    novelty: float
    novelty_std: float
    n_splits: int
    fidelity_per_split: tuple[float, ...]
    novelty_per_split: tuple[float, ...]

    def as_dict(self) -> dict[str, float]:
        """The four summary numbers, for a flat metrics dict."""
        d = asdict(self)
        return {k: float(d[k]) for k in ("fidelity", "fidelity_std", "novelty", "novelty_std")}


def _summarise(fidelity: list[float], novelty: list[float]) -> NeighbourRatios:
    f, n = np.asarray(fidelity), np.asarray(novelty)
    return NeighbourRatios(
        fidelity=float(f.mean()),
        fidelity_std=float(f.std(ddof=1)) if len(f) > 1 else 0.0,
        novelty=float(n.mean()),
        novelty_std=float(n.std(ddof=1)) if len(n) > 1 else 0.0,
        n_splits=len(f),
        fidelity_per_split=tuple(float(v) for v in f),
        novelty_per_split=tuple(float(v) for v in n),
    )


class NeighbourReference:
    """The real-data side of the ratios, computed once for a (train, held-out, splits) triple.

    Holds, for every split s, min_j ||B_i - A_j|| and min_j ||B_i - T_j|| so that several
    sample sets (model, baselines) are measured against exactly the same denominators.

    Parameters
    ----------
    train: [Nt, D] training rows; heldout: [Nh, D] held-out rows (same space, Nh >= 4).
    splits: the half-splits of the held-out set (see :func:`half_splits`).
    """

    def __init__(self, train: Tensor, heldout: Tensor, splits: list[HalfSplit]) -> None:
        self.train, self.heldout = as_matrices(train=train, heldout=heldout)
        self.splits = splits
        self.masks = reference_masks(splits, self.heldout.shape[0])  # [K, Nh]
        # every held-out row to its nearest A row per split; only rows of B are used below
        self._heldout_to_ref = nearest_distances_within(self.heldout, self.heldout, self.masks).cpu()  # [K, Nh]
        self._heldout_to_train = nearest_distances(self.heldout, self.train)[:, 0].cpu()  # [Nh]
        self._fid_denom = [self._median(self._heldout_to_ref[s, sp.real]) for s, sp in enumerate(splits)]
        self._nov_denom = [self._median(self._heldout_to_train[sp.real]) for sp in splits]
        if min(self._fid_denom) <= 0.0:
            raise DataError("half of the held-out rows duplicate the other half: fidelity is undefined")
        if min(self._nov_denom) <= 0.0:
            raise DataError("half of the held-out rows are copies of training rows: the split leaks")

    @staticmethod
    def _median(d: Tensor) -> float:
        return float(np.median(d.numpy()))

    def ratios(self, samples: np.ndarray | Tensor) -> NeighbourRatios:
        """Fidelity and novelty of ``samples`` [Ns, D] (all rows are used in every split)."""
        (s,) = as_matrices(samples=samples)
        s = s.to(self.heldout.device)
        if s.shape[1] != self.heldout.shape[1]:
            raise DataError(f"samples must have D={self.heldout.shape[1]}; got {s.shape[1]}")
        to_ref = nearest_distances_within(s, self.heldout, self.masks).cpu()  # [K, Ns]
        nov_num = self._median(nearest_distances(s, self.train)[:, 0].cpu())  # same for every split
        fidelity = [self._median(to_ref[k]) / self._fid_denom[k] for k in range(len(self.splits))]
        novelty = [nov_num / d for d in self._nov_denom]
        return _summarise(fidelity, novelty)

    def heldout_ratios(self) -> NeighbourRatios:
        """The ratios of the real stand-in B of each split: 1.0 exactly, by construction.

        Numerator and denominator are the same numbers, so this row of a table is a check
        of the bookkeeping, not a measurement.
        """
        fidelity, novelty = [], []
        for k, split in enumerate(self.splits):
            fidelity.append(self._median(self._heldout_to_ref[k, split.real]) / self._fid_denom[k])
            novelty.append(self._median(self._heldout_to_train[split.real]) / self._nov_denom[k])
        return _summarise(fidelity, novelty)


def neighbour_ratios(
    samples: np.ndarray | Tensor,
    train: np.ndarray | Tensor,
    heldout: np.ndarray | Tensor,
    *,
    n_splits: int = 20,
    seed: int = 0,
) -> NeighbourRatios:
    """Fidelity and novelty of ``samples`` [Ns, D] against ``train`` [Nt, D] and ``heldout`` [Nh, D].

    Averaged over ``n_splits`` seeded half-splits of the held-out set (see module docstring).
    """
    s, tr, h = as_matrices(samples=samples, train=train, heldout=heldout)
    reference = NeighbourReference(tr, h, half_splits(h.shape[0], n_splits, seed))
    return reference.ratios(s)

