"""Baselines reproduce what they claim: the Gaussian fit's moments, N(0, I), training rows."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from flowstudy.errors import ConfigError
from flowstudy.metrics import BASELINES, baseline_samples


def _correlated(rng, n, d):
    mix = rng.standard_normal((d, d)) / np.sqrt(d)
    return rng.standard_normal((n, d)) @ mix + np.linspace(-2, 2, d)


@pytest.mark.parametrize("n_train, dim", [(30, 50), (200, 10)])  # N <= D (span) and N > D (eigen root)
def test_gaussian_baseline_reproduces_training_mean_and_covariance(n_train, dim):
    rng = np.random.default_rng(0)
    train = _correlated(rng, n_train, dim)
    g = baseline_samples(train, 60_000, seed=1, names=["gaussian"])["gaussian"].numpy()
    cov = np.cov(train, rowvar=False)
    scale = np.sqrt(np.trace(cov) / dim)
    assert np.abs(g.mean(0) - train.mean(0)).max() < 0.05 * scale
    rel = np.linalg.norm(np.cov(g, rowvar=False) - cov) / np.linalg.norm(cov)
    assert rel < 0.03


def test_gaussian_baseline_with_few_rows_stays_in_their_affine_span():
    rng = np.random.default_rng(1)
    train = rng.standard_normal((12, 40))
    g = baseline_samples(train, 100, seed=0, names=["gaussian"])["gaussian"].numpy()
    basis = np.linalg.svd(train - train.mean(0), full_matrices=False)[2]  # [12, 40]
    resid = (g - train.mean(0)) - (g - train.mean(0)) @ basis.T @ basis
    assert np.abs(resid).max() < 1e-10


def test_noise_baseline_is_standard_normal():
    x = baseline_samples(np.zeros((5, 8)), 50_000, seed=2, names=["noise"])["noise"].numpy()
    assert np.abs(x.mean(0)).max() < 0.03
    assert np.abs(np.cov(x, rowvar=False) - np.eye(8)).max() < 0.03


def test_copies_are_training_rows_without_replacement_then_whole_permutations():
    train = torch.arange(40, dtype=torch.float32).reshape(10, 4)
    few = baseline_samples(train, 7, seed=3, names=["copies"])["copies"]
    ids = (few[:, 0] / 4).long()
    assert len(set(ids.tolist())) == 7 and torch.equal(few, train[ids])
    many = baseline_samples(train, 25, seed=3, names=["copies"])["copies"]
    counts = np.bincount((many[:, 0] / 4).long().numpy(), minlength=10)
    assert set(counts.tolist()) <= {2, 3} and counts.sum() == 25


def test_baselines_are_seeded_keep_dtype_and_reject_unknown_names():
    train = np.random.default_rng(4).standard_normal((20, 6)).astype(np.float32)
    a, b = baseline_samples(train, 5, seed=9), baseline_samples(train, 5, seed=9)
    assert set(a) == set(BASELINES) and all(torch.equal(a[k], b[k]) for k in a)
    assert all(v.dtype == torch.float32 and v.shape == (5, 6) for v in a.values())
    only = baseline_samples(train, 5, seed=9, names=["noise"])  # a subset draws the same rows
    assert torch.equal(only["noise"], a["noise"])
    with pytest.raises(ConfigError, match="valid: gaussian, noise, copies"):
        baseline_samples(train, 5, seed=0, names=["uniform"])
