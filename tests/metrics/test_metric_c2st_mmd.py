"""C2ST AUC is ~0.5 for equal distributions and high for shifted ones; MMD^2_u is unbiased."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from flowstudy.errors import ConfigError
from flowstudy.metrics import c2st_auc, median_heuristic, mmd_rbf
from flowstudy.metrics import distances


def test_c2st_equal_distributions_near_half():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((400, 64)), rng.standard_normal((400, 64))
    res = c2st_auc(a, b, seed=1)
    assert abs(res.auc - 0.5) < 0.06
    assert res.n_per_class == 400 and res.n_folds == 5 and len(res.fold_aucs) == 5


def test_c2st_detects_a_mean_shift_and_balances_classes():
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((300, 64)) + 0.3, rng.standard_normal((500, 64))
    res = c2st_auc(a, b, seed=0)
    assert res.auc > 0.9
    assert res.n_per_class == 300


def test_c2st_small_sets_use_fewer_folds_and_are_seeded():
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal((3, 8)), rng.standard_normal((10, 8))
    res = c2st_auc(a, b, seed=5)
    assert res.n_folds == 3 and res.n_per_class == 3
    assert res == c2st_auc(a, b, seed=5)
    assert c2st_auc(a, b, seed=5, classifier="knn").n_folds == 3  # k capped at the fold size
    with pytest.raises(ConfigError, match="valid: logistic, knn, knn_cosine, mlp"):
        c2st_auc(a, b, classifier="svm")


def test_linear_c2st_is_blind_to_structure_that_knn_sees():
    # standardised low-rank data vs N(0, I): equal means and variances, different geometry
    rng = np.random.default_rng(6)
    data = rng.standard_normal((300, 3)) @ rng.standard_normal((3, 32)) + 0.1 * rng.standard_normal((300, 32))
    data = (data - data.mean(0)) / data.std(0)
    noise = rng.standard_normal((300, 32))
    assert abs(c2st_auc(noise, data, seed=0).auc - 0.5) < 0.1
    assert c2st_auc(noise, data, seed=0, classifier="knn").auc > 0.65
    assert c2st_auc(noise, data, seed=0, classifier="knn_cosine").auc > 0.65


def test_cosine_knn_tells_noise_from_data_better_than_euclidean_knn():
    # z-scored anisotropic data vs N(0, I): noise rows sit far from everything, so their Euclidean
    # neighbours are data rows and plain kNN often calls them data; directions tell them apart
    rng = np.random.default_rng(7)
    data = rng.standard_normal((200, 8)) @ rng.standard_normal((8, 64)) + 0.3 * rng.standard_normal((200, 64))
    data = (data - data.mean(0)) / data.std(0)
    noise = rng.standard_normal((200, 64))
    assert c2st_auc(noise, data, seed=0, classifier="knn_cosine").auc > 0.9
    assert c2st_auc(noise, data, seed=0, classifier="knn").auc < 0.8
    half = c2st_auc(data[:100], data[100:], seed=0, classifier="knn_cosine").auc
    assert abs(half - 0.5) < 0.15


def _brute_mmd2(x: torch.Tensor, y: torch.Tensor, sigma: float) -> float:
    k = lambda p, q: torch.exp(-torch.cdist(p, q) ** 2 / (2 * sigma**2))  # noqa: E731
    m, n = len(x), len(y)
    kxx, kyy = k(x, x), k(y, y)
    return float(
        (kxx.sum() - kxx.diag().sum()) / (m * (m - 1))
        + (kyy.sum() - kyy.diag().sum()) / (n * (n - 1))
        - 2 * k(x, y).mean()
    )


def test_mmd_matches_the_u_statistic_formula(monkeypatch):
    monkeypatch.setattr(distances, "DEFAULT_BUDGET_BYTES", 8 * 100)  # many chunks
    rng = np.random.default_rng(3)
    x, y = torch.from_numpy(rng.standard_normal((21, 3))), torch.from_numpy(rng.standard_normal((17, 3)) + 0.5)
    res = mmd_rbf(x, y, bandwidths=[0.7, 1.5])
    assert res.mmd2 == pytest.approx([_brute_mmd2(x, y, 0.7), _brute_mmd2(x, y, 1.5)], rel=1e-10)
    assert res.total == pytest.approx(sum(res.mmd2)) and res.mean == pytest.approx(res.total / 2)



def test_mmd_is_unbiased_for_equal_distributions_and_positive_for_shifted(one_thread):
    rng = np.random.default_rng(4)
    fixed, median = [], []
    for rep in range(200):
        x, y = rng.standard_normal((40, 8)), rng.standard_normal((40, 8))
        fixed.append(mmd_rbf(x, y, bandwidths=[2.0, 4.0]).total)
        median.append(mmd_rbf(x, y, seed=rep).total)
    for values in (np.array(fixed), np.array(median)):
        se = values.std(ddof=1) / np.sqrt(len(values))
        assert abs(values.mean()) < 3 * se
        assert (values < 0).any()  # single draws of an unbiased estimator go negative
    shifted = [mmd_rbf(rng.standard_normal((40, 8)) + 0.5, rng.standard_normal((40, 8))).total for _ in range(20)]
    assert np.mean(shifted) > 10 * np.std(fixed)


def test_median_heuristic_of_one_set_and_bad_bandwidths():
    x = torch.tensor([[0.0], [1.0], [3.0]], dtype=torch.float64)  # distances 1, 2, 3
    assert median_heuristic(x) == pytest.approx(2.0)
    with pytest.raises(ConfigError, match="positive"):
        mmd_rbf(x, x, bandwidths=[1.0, -1.0])
