"""Named random streams derived from one seed.

``np.random.default_rng([seed, 0])`` is the same stream as ``default_rng(seed)`` (trailing
zeros do not change a SeedSequence), so indexing streams by position alone would replay the
stream that generated or split the data. Each stream here is keyed by a purpose tag first.
"""

from __future__ import annotations

import zlib

import numpy as np


def derived_rng(seed: int, purpose: str, *index: int) -> np.random.Generator:
    """Generator for ``purpose`` (e.g. "half-split") and ``index`` under ``seed``.

    Deterministic across runs and platforms; distinct purposes give independent streams.
    """
    tag = zlib.crc32(purpose.encode()) | 1  # non-zero, stable across processes
    return np.random.default_rng([tag, int(seed), *(int(i) for i in index)])


def derived_seed(seed: int, purpose: str, *index: int) -> int:
    """An integer seed in [0, 2^31) drawn from :func:`derived_rng` (for APIs that take an int)."""
    return int(derived_rng(seed, purpose, *index).integers(2**31 - 1))
