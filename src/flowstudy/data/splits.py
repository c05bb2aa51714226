"""Seeded splits and nested subsets, as index arrays (rows are never copied or reordered here)."""

from __future__ import annotations

import numpy as np

from flowstudy.errors import DataError


def split_indices(n: int, fractions: dict[str, float], seed: int) -> dict[str, np.ndarray]:
    """Partition ``range(n)`` at random into named parts of the given fractions.

    Fractions must be positive and sum to 1; part sizes are rounded so they sum to n.
    Each part's indices are sorted, so the rows keep their file order.
    """
    if not fractions or any(f <= 0 for f in fractions.values()) or abs(sum(fractions.values()) - 1) > 1e-9:
        raise DataError(f"split fractions must be positive and sum to 1; got {fractions}")
    order = np.random.default_rng(seed).permutation(n)
    bounds = np.round(np.cumsum([0.0, *fractions.values()]) * n).astype(int)
    return {name: np.sort(order[lo:hi]) for name, lo, hi in zip(fractions, bounds[:-1], bounds[1:])}


def nested_subsets(n: int, sizes: list[int], seed: int) -> dict[int, np.ndarray]:
    """Subsets of ``range(n)`` with the given sizes, each contained in every larger one.

    All are prefixes of one seeded permutation, so a data-size study compares models that
    saw strictly more of the same data.
    """
    bad = [s for s in sizes if not 1 <= s <= n]
    if bad:
        raise DataError(f"subset sizes must lie in [1, {n}]; got {bad}")
    order = np.random.default_rng(seed).permutation(n)
    return {size: np.sort(order[:size]) for size in sorted(sizes)}
