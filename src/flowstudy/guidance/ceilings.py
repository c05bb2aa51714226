"""Ceilings an optimisation is read against: the best training row, and the top-k bound.

- **Best training row**: the objective's highest score over the prior's training rows. An
  optimiser that cannot beat it has done no better than looking the answer up in the data.
- **Top-k bound** (cosine targets): the cosine to the target t [D] of

      x_k = m + V_k V_kᵀ (t − m)

  where m is the training rows' mean and V_k [D, k] their top-k principal directions: the point of
  the affine top-k principal subspace nearest the target. A prior whose samples live near that
  subspace (a Gaussian fit, a flow trained on the top-k residual) cannot reach targets beyond it by
  construction; bounds for k = 32, 64, 128 show how much of the target the data's main directions
  hold.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from flowstudy.guidance import bounds

TOP_K = (32, 64, 128)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """cos(a, b) of two vectors [D], in float64."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def topk_cosine_bound(train: np.ndarray, target: np.ndarray, ks: tuple[int, ...] = TOP_K) -> dict[int, float]:
    """k -> cos(m + V_k V_kᵀ (t − m), t) for the training rows ``train`` [N, D] and ``target`` [D]
    (:func:`flowstudy.guidance.bounds.topk_cosine_bound` for one target); k larger than the rank of
    the centred rows is left out."""
    x = np.asarray(train, np.float64)
    t = np.asarray(target, np.float64)
    if x.ndim != 2 or t.shape != (x.shape[1],):
        raise ValueError(f"train must be [N, D] and target [D]; got {x.shape} and {t.shape}")
    s = np.linalg.svd(x - x.mean(axis=0), compute_uv=False)
    rank = int((s > s[0] * 1e-10).sum()) if len(s) else 0
    kept = tuple(k for k in ks if k <= rank)
    return {k: float(v[0]) for k, v in bounds.topk_cosine_bound(x, t[None], kept).items()} if kept else {}


@dataclass
class Ceilings:
    """Per objective spec: the best training row's score, and the top-k bounds (cosine targets)."""

    best_train: dict[str, float] = field(default_factory=dict)
    topk: dict[str, dict[int, float]] = field(default_factory=dict)

    def mean_best_train(self, objectives: list[str]) -> float | None:
        """Mean best-training-row score over ``objectives`` (None unless every one has it)."""
        values = [self.best_train.get(o) for o in objectives]
        return float(np.mean(values)) if values and all(v is not None for v in values) else None

    def mean_topk(self, objectives: list[str]) -> dict[int, float]:
        """k -> mean top-k bound over ``objectives`` (the k every one of them has)."""
        if not objectives or not all(o in self.topk for o in objectives):
            return {}
        ks = set.intersection(*(set(self.topk[o]) for o in objectives))
        return {k: float(np.mean([self.topk[o][k] for o in objectives])) for k in sorted(ks)}


def compute_ceilings(objectives: list[str], train: np.ndarray) -> Ceilings:
    """The ceilings of ``objectives`` (spec strings) against the training rows [N, D] (original space)."""
    from flowstudy.guidance.objectives import parse_objective

    out = Ceilings()
    for spec in objectives:
        out.best_train[spec] = float(parse_objective(spec)(train).max())
        target = cosine_target(spec)
        if target is not None:
            out.topk[spec] = topk_cosine_bound(train, target)
    return out


def cosine_target(spec: str) -> np.ndarray | None:
    """The target row [D] of a ``cosine:DATASPEC:ROW`` objective without noise; None for other kinds."""
    from flowstudy.data import load_dataset

    if not spec.startswith("cosine:") or "," in spec:
        return None
    data_spec, _, row = spec[len("cosine:"):].rpartition(":")
    return np.asarray(load_dataset(data_spec).embeddings[int(row)], np.float64)


def target_text(spec: str) -> str | None:
    """The text of a cosine objective's target row, where its data set has texts."""
    from flowstudy.data import load_dataset

    if not spec.startswith("cosine:"):
        return None
    data_spec, _, row = spec.split(",")[0][len("cosine:"):].rpartition(":")
    texts = load_dataset(data_spec).texts
    return None if texts is None else texts[int(row)]


__all__ = ["TOP_K", "Ceilings", "compute_ceilings", "cosine", "cosine_target", "target_text", "topk_cosine_bound"]
