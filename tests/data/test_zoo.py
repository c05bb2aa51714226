"""The synthetic zoo: seeded, split without overlap, and with the structure its docstring states."""

from __future__ import annotations

import numpy as np
import pytest

from flowstudy.data import load_dataset, zoo
from flowstudy.errors import DataError


def _eigenvalues(x: np.ndarray) -> np.ndarray:
    """Covariance eigenvalues of rows x [N, D], largest first (float64)."""
    centred = x.astype(np.float64) - x.mean(0)
    return np.linalg.svd(centred, compute_uv=False) ** 2 / (x.shape[0] - 1)


def test_splits_partition_the_generated_rows_and_reload_identically():
    rows = zoo.generate("manifold-768-1k")
    parts = [load_dataset(f"zoo:manifold-768-1k:{split}") for split in zoo.ZOO_SPLITS]
    assert [p.n for p in parts] == [750, 100, 150] and all(p.dim == 768 and p.texts is None for p in parts)
    joined = np.concatenate([p.embeddings for p in parts])
    assert np.array_equal(np.sort(joined, axis=0), np.sort(rows, axis=0))  # every row once
    assert len({r.tobytes() for r in joined}) == rows.shape[0]
    assert np.array_equal(load_dataset("zoo:manifold-768-1k").embeddings, parts[0].embeddings)  # default split: train
    zoo._generate.cache_clear()
    assert np.array_equal(load_dataset("zoo:manifold-768-1k:test").embeddings, parts[2].embeddings)  # from the seed again
    assert parts[0].source == "zoo:manifold-768-1k:train"


def test_the_default_size_is_the_spelt_out_one():
    assert np.array_equal(zoo.generate("clusters-768"), zoo.generate("clusters-768-2k"))
    assert zoo.generate("clusters-768").shape == (2000, 768)


def test_the_manifold_spans_48_directions_above_the_noise_floor():
    # 24 distinct Fourier frequencies as sin and cos: 48 orthogonal functions of the torus, mapped
    # linearly into D, plus isotropic noise of variance NOISE^2
    lam, floor, rank = _eigenvalues(zoo.generate("manifold-768-1k")), zoo.NOISE**2, 48
    # smallest signal eigenvalue ~ 0.5 (a feature's variance) * 0.2 * 768 / 24 = 3.2, 1280 x the floor
    assert lam[rank - 1] > 100 * floor
    # then the noise floor: Marchenko-Pastur for 1000 rows in 768-D puts the noise eigenvalues within
    # floor * (1 +- sqrt(768 / 1000))^2 = [0.015, 3.5] x floor, median near the floor
    assert lam[rank] < 3.5 * floor * 1.1 and floor * 0.5 < np.median(lam[rank:700]) < floor * 1.5


def test_heavy_tails_show_in_the_row_norms():
    # ratio E[r^4] / E[r^2]^2 of centred squared norms: ~1 + 2 sum(lam^2) / sum(lam)^2 for a Gaussian
    # (< 1.2 here), infinite in expectation for a Student t with 3 degrees of freedom
    def ratio(x):
        r2 = ((x - x.mean(0)) ** 2).sum(1)
        return (r2**2).mean() / r2.mean() ** 2

    assert ratio(zoo.generate("heavytail-768-1k")) > 2.0
    assert ratio(zoo.generate("manifold-768-1k")) < 1.2


def test_clusters_separate_into_eight_groups():
    # centres ~ N(0, 0.36 I): between-cluster distances ~ sqrt(2 * 0.36 D) on top of the spread, so
    # every row's nearest neighbour is in its own cluster: the 2-nearest-neighbour graph has 8 components
    from scipy.sparse.csgraph import connected_components
    from scipy.spatial.distance import cdist

    x = zoo.generate("clusters-768-1k").astype(np.float64)
    d = cdist(x, x)
    np.fill_diagonal(d, np.inf)
    near = np.argsort(d, axis=1)[:, :3]
    graph = np.zeros_like(d, dtype=bool)
    graph[np.repeat(np.arange(len(x)), 3), near.ravel()] = True
    assert connected_components(graph, directed=False)[0] == 8


@pytest.mark.parametrize(
    "spec, words",
    [
        ("zoo:rings-1024", "unknown zoo set 'rings-1024'; valid: KIND-D[-SIZE] with KIND in clusters, manifold, heavytail"),
        ("zoo:clusters-512", "D in 768, 1024"),
        ("zoo:clusters-1024-3k", "unknown zoo size '3k'"),
        ("zoo:clusters-1024:holdout", "zoo:clusters-1024 has no split 'holdout'; available: train, val, test"),
    ],
)
def test_bad_names_list_the_valid_ones(spec, words):
    with pytest.raises(DataError, match=None) as err:
        load_dataset(spec)
    assert words in str(err.value)
