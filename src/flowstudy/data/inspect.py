"""Descriptive report of an embedding set: the facts to know before training on it."""

from __future__ import annotations

import numpy as np

from flowstudy.data.loading import EmbeddingSet
from flowstudy.data.validation import nonfinite_rows


def inspect_embeddings(
    data: EmbeddingSet, *, near_constant_ratio: float = 0.1, near_duplicate_cosine: float = 0.99
) -> dict[str, object]:
    """N, D, norms, per-dimension spread, near-constant dimensions, duplicates, non-finite rows.

    A dimension is near-constant when its std is below ``near_constant_ratio`` x the median
    per-dimension std (the same rule as the Standardizer's floor). Near duplicates are pairs
    of distinct rows with cosine similarity >= ``near_duplicate_cosine``.
    """
    x = data.embeddings.astype(np.float64)
    bad = nonfinite_rows(x)
    finite = np.delete(x, bad, axis=0)
    norms = np.linalg.norm(finite, axis=1)
    std = finite.std(axis=0, ddof=1) if finite.shape[0] > 1 else np.zeros(x.shape[1])
    median_std = float(np.median(std))
    near_constant = np.flatnonzero(std < near_constant_ratio * median_std)
    return {
        "source": data.source,
        "n": data.n,
        "dim": data.dim,
        "has_texts": data.texts is not None,
        "nonfinite_rows": bad.tolist(),
        "norm": _summary(norms),
        "dim_std": {**_summary(std), "p01": float(np.quantile(std, 0.01)), "p99": float(np.quantile(std, 0.99))},
        "mean_pairwise_cosine": _mean_pairwise_cosine(finite),
        "near_constant_dims": [{"dim": int(d), "std": float(std[d])} for d in near_constant[np.argsort(std[near_constant])]],
        "exact_duplicate_groups": _exact_duplicates(data.embeddings, bad),
        "near_duplicate_pairs": _near_duplicates(finite, np.setdiff1d(np.arange(data.n), bad), near_duplicate_cosine),
        "near_duplicate_cosine": near_duplicate_cosine,
    }


def _summary(values: np.ndarray) -> dict[str, float]:
    return {
        "mean": float(values.mean()),
        "std": float(values.std()),
        "min": float(values.min()),
        "median": float(np.median(values)),
        "max": float(values.max()),
    }


def _unit_rows(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-30)


def _mean_pairwise_cosine(x: np.ndarray) -> float:
    n = x.shape[0]
    if n < 2:
        return float("nan")
    cos = _unit_rows(x) @ _unit_rows(x).T  # [N, N]
    return float((cos.sum() - np.trace(cos)) / (n * (n - 1)))


def _exact_duplicates(x: np.ndarray, skip: np.ndarray) -> list[list[int]]:
    """Groups of row indices whose bytes are identical."""
    groups: dict[bytes, list[int]] = {}
    skipped = set(skip.tolist())
    for i, row in enumerate(x):
        if i not in skipped:
            groups.setdefault(row.tobytes(), []).append(i)
    return [g for g in groups.values() if len(g) > 1]


def _near_duplicates(x: np.ndarray, rows: np.ndarray, threshold: float, limit: int = 50) -> list[dict[str, float]]:
    """Pairs (i < j) of distinct rows with cosine >= threshold, highest first (at most ``limit``)."""
    unit = _unit_rows(x)
    pairs = []
    for start in range(0, unit.shape[0], 1024):  # chunked: N x N would not fit for large N
        cos = unit[start : start + 1024] @ unit.T  # [chunk, N]
        i, j = np.nonzero(cos >= threshold)
        keep = (i + start) < j
        pairs += [(float(cos[a, b]), int(rows[a + start]), int(rows[b])) for a, b in zip(i[keep], j[keep])]
    pairs.sort(reverse=True)
    return [{"i": i, "j": j, "cosine": c} for c, i, j in pairs[:limit]]
