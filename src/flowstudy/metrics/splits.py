"""Random half-splits of the held-out set: a reference half A and a real stand-in half B.

Nearest-neighbour ratios and the reference row of the evaluation table need two disjoint
sets of real rows: samples and B are both measured against A, so the real value of every
metric is known at the same sample size. With a held-out set of a few hundred rows one split
is noisy, so metrics average over several seeded splits, shared by every row of a table.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from flowstudy.errors import ConfigError, DataError
from flowstudy.metrics.seeding import derived_rng


@dataclass(frozen=True)
class HalfSplit:
    """Index arrays into the held-out set: ``reference`` (A) and ``real`` (B), disjoint, sorted.

    With an odd number of rows, A gets the extra row.
    """

    reference: np.ndarray
    real: np.ndarray


def half_splits(n_heldout: int, n_splits: int, seed: int) -> list[HalfSplit]:
    """``n_splits`` seeded random half-splits of ``range(n_heldout)``.

    Split s draws from its own stream (``derived_rng(seed, "half-split", s)``), so the first k
    splits do not depend on ``n_splits``.
    """
    if n_heldout < 4:
        raise DataError(f"the held-out set needs at least 4 rows to split in halves; got {n_heldout}")
    if isinstance(n_splits, bool) or not isinstance(n_splits, int) or n_splits < 1:
        raise ConfigError(f"n_splits must be an integer >= 1; got {n_splits!r}")
    half = n_heldout // 2  # |B|; A gets the remaining ceil(n / 2)
    splits = []
    for s in range(n_splits):
        order = derived_rng(seed, "half-split", s).permutation(n_heldout)
        splits.append(HalfSplit(reference=np.sort(order[half:]), real=np.sort(order[:half])))
    return splits


def reference_masks(splits: list[HalfSplit], n_heldout: int) -> Tensor:
    """[K, n_heldout] bool: row s marks the reference half A of split s."""
    masks = torch.zeros(len(splits), n_heldout, dtype=torch.bool)
    for s, split in enumerate(splits):
        masks[s, torch.from_numpy(split.reference)] = True
    return masks
