"""Synthetic embedding sets with known structure, generated from a seed (never downloaded).

Spec: ``zoo:KIND-D[:SPLIT]`` or ``zoo:KIND-D-SIZE[:SPLIT]`` (default split: train), e.g.
``zoo:clusters-1024``, ``zoo:manifold-768:test``, ``zoo:heavytail-1024-10k:val``.

Kinds (each in D = 768 or 1024, rows on a common offset like real sentence embeddings):

- ``clusters``: 8 clusters; each is its centre plus a rank-16 Gaussian spread of its own plus
  isotropic noise. The Gaussian fit puts mass between the clusters.
- ``manifold``: a curved 3-D manifold: a point of the 3-torus, read through 24 random Fourier
  features (sin and cos of distinct integer frequencies: 48 orthogonal functions), mapped into D
  by a random linear map, plus isotropic noise. Intrinsic dimension 3, so almost all of the Gaussian fit's volume is off it.
- ``heavytail``: a multivariate Student t with 3 degrees of freedom on a power-law covariance of
  rank 64 plus isotropic noise: a Gaussian scale mixture, whose tails the Gaussian fit misses.

SIZE is the total number of rows before the split (``2k`` by default; ``1k`` to ``10k``); the
rows are split 75 / 10 / 15 % into train / val / test, seeded, so every split of a set comes from
the same draw. Everything is determined by the name: the same spec gives the same rows anywhere.
"""

from __future__ import annotations

import zlib
from functools import lru_cache
from typing import Callable

import numpy as np

from flowstudy.data.splits import split_indices
from flowstudy.errors import DataError

ZOO_KINDS = ("clusters", "manifold", "heavytail")
ZOO_DIMS = (768, 1024)
ZOO_SIZES = {"1k": 1000, "2k": 2000, "5k": 5000, "10k": 10000}
DEFAULT_SIZE = "2k"
ZOO_SPLITS = {"train": 0.75, "val": 0.10, "test": 0.15}

NOISE = 0.05  # isotropic noise per dimension, relative to a unit per-dimension offset scale


def zoo_names() -> list[str]:
    """Every set at its default size: ``KIND-D``."""
    return [f"{kind}-{dim}" for kind in ZOO_KINDS for dim in ZOO_DIMS]


def _clusters(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    k, rank = 8, 16
    centres = rng.normal(size=(k, dim)) * 0.6  # [K, D]: centre distance ~0.85 sqrt(D)
    spread = rng.normal(size=(k, rank, dim)) / np.sqrt(rank)  # [K, r, D], each cluster's own directions
    label = rng.integers(0, k, n)  # [N]
    latent = rng.normal(size=(n, rank)) * np.linspace(1.0, 0.2, rank)  # [N, r], decaying spread
    noise = NOISE * rng.normal(size=(n, dim))
    rows = centres[label] + noise  # [N, D]
    for c in range(k):  # each cluster's spread along its own directions
        rows[label == c] += latent[label == c] @ spread[c]
    return rows


def _manifold(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    intrinsic, features = 3, 24
    angles = rng.uniform(0, 2 * np.pi, size=(n, intrinsic))  # [N, 3]: a point of the 3-torus
    grid = np.stack(np.meshgrid(*[np.arange(-2, 3)] * intrinsic, indexing="ij"), -1).reshape(-1, intrinsic)  # [125, 3]
    half = grid[[tuple(f) > tuple(-f) for f in grid]]  # one of each pair +-f, no zero: 62 frequencies
    freq = half[rng.choice(len(half), features, replace=False)].T  # [3, F], distinct: orthogonal features
    phase = angles @ freq  # [N, F]
    lift = np.concatenate([np.sin(phase), np.cos(phase)], axis=1)  # [N, 2F]
    weights = rng.normal(size=(2 * features, dim)) / np.sqrt(features) * np.sqrt(np.linspace(2.0, 0.2, 2 * features))[:, None]
    return lift @ weights + NOISE * rng.normal(size=(n, dim))


def _heavytail(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    rank, dof = 64, 3.0
    basis = np.linalg.qr(rng.normal(size=(dim, rank)))[0].T  # [r, D], orthonormal rows
    scales = 2.0 * np.arange(1, rank + 1) ** -0.6  # power-law spectrum
    gauss = rng.normal(size=(n, rank)) * scales @ basis + NOISE * rng.normal(size=(n, dim))  # [N, D]
    mixing = np.sqrt(dof / rng.chisquare(dof, size=(n, 1)))  # [N, 1]: one scale per row
    return gauss * mixing


GENERATORS: dict[str, Callable[[np.random.Generator, int, int], np.ndarray]] = {
    "clusters": _clusters,
    "manifold": _manifold,
    "heavytail": _heavytail,
}


def parse_name(name: str) -> tuple[str, int, int]:
    """``KIND-D`` or ``KIND-D-SIZE`` -> (kind, D, total rows); ConfigError-like DataError otherwise."""
    parts = name.split("-")
    valid = f"valid: KIND-D[-SIZE] with KIND in {', '.join(ZOO_KINDS)}, D in {', '.join(map(str, ZOO_DIMS))}, SIZE in {', '.join(ZOO_SIZES)}"
    if len(parts) not in (2, 3) or parts[0] not in ZOO_KINDS or parts[1] not in {str(d) for d in ZOO_DIMS}:
        raise DataError(f"unknown zoo set '{name}'; {valid}")
    size = parts[2] if len(parts) == 3 else DEFAULT_SIZE
    if size not in ZOO_SIZES:
        raise DataError(f"unknown zoo size '{size}' in '{name}'; {valid}")
    return parts[0], int(parts[1]), ZOO_SIZES[size]


def canonical_name(name: str) -> str:
    """``KIND-D-SIZE`` with the size spelt out (``clusters-1024`` -> ``clusters-1024-2k``): the seed."""
    kind, dim, n = parse_name(name)
    return f"{kind}-{dim}-{next(k for k, v in ZOO_SIZES.items() if v == n)}"


def generate(name: str) -> np.ndarray:
    """All rows of the set ``name`` (before the split): float32 [N, D], seeded by the name.
    The array is shared between calls (kept for the other splits): copy before writing to it."""
    return _generate(canonical_name(name))


@lru_cache(maxsize=4)
def _generate(canonical: str) -> np.ndarray:
    kind, dim, n = parse_name(canonical)
    rng = np.random.default_rng(zlib.crc32(canonical.encode()))
    offset = rng.normal(size=dim) * 0.5  # a shared mean, as real embeddings have
    rows = (offset + GENERATORS[kind](rng, n, dim)).astype(np.float32)
    rows.setflags(write=False)
    return rows


def load(name_and_split: str) -> tuple[np.ndarray, None, str]:
    """``NAME`` or ``NAME:SPLIT`` -> (embeddings [N_split, D], no texts, source label)."""
    name, _, split = name_and_split.partition(":")
    split = split or "train"
    parse_name(name)
    if split not in ZOO_SPLITS:
        raise DataError(f"zoo:{name} has no split '{split}'; available: {', '.join(ZOO_SPLITS)}")
    rows = generate(name)
    parts = split_indices(rows.shape[0], ZOO_SPLITS, seed=zlib.crc32(f"{canonical_name(name)}:split".encode()))
    return rows[parts[split]], None, f"zoo:{name}:{split}"
