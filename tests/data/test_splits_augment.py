"""Splits are deterministic partitions, subsets nest; augmentations have the stated statistics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from flowstudy.data import apply_augmentations, dim_dropout, gaussian_noise, mixup, nested_subsets, parse_augmentations, split_indices
from flowstudy.errors import ConfigError, DataError


def test_split_is_a_seeded_partition():
    parts = split_indices(1000, {"train": 0.8, "val": 0.1, "test": 0.1}, seed=3)
    assert [len(p) for p in parts.values()] == [800, 100, 100]
    assert np.array_equal(np.sort(np.concatenate(list(parts.values()))), np.arange(1000))
    again = split_indices(1000, {"train": 0.8, "val": 0.1, "test": 0.1}, seed=3)
    assert all(np.array_equal(parts[k], again[k]) for k in parts)
    other = split_indices(1000, {"train": 0.8, "val": 0.1, "test": 0.1}, seed=4)
    assert not np.array_equal(parts["val"], other["val"])
    with pytest.raises(DataError, match="sum to 1"):
        split_indices(10, {"a": 0.5, "b": 0.4}, seed=0)


def test_nested_subsets_are_nested_and_deterministic():
    subsets = nested_subsets(800, [200, 400, 800], seed=0)
    assert set(subsets[200]) <= set(subsets[400]) <= set(subsets[800])
    assert len(set(subsets[400])) == 400
    assert np.array_equal(subsets[200], nested_subsets(800, [200], seed=0)[200])
    with pytest.raises(DataError, match=r"subset sizes must lie in \[1, 800\]; got \[900\]"):
        nested_subsets(800, [900], seed=0)


def test_mixup_stays_on_segments_between_rows():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 5, dtype=torch.float64, generator=g)
    out = mixup(x, 0.4, torch.Generator().manual_seed(1))
    perm = torch.randperm(64, generator=torch.Generator().manual_seed(1))
    # out_i = lam x_i + (1 - lam) x_perm(i): solve for lam from one coordinate, check all others.
    moved = perm != torch.arange(64)
    assert moved.sum() > 50
    torch.testing.assert_close(out[~moved], x[~moved])  # a row mixed with itself is unchanged
    x, out, partner = x[moved], out[moved], x[perm][moved]
    lam = (out[:, 0] - partner[:, 0]) / (x[:, 0] - partner[:, 0])
    torch.testing.assert_close(out, lam[:, None] * x + (1 - lam[:, None]) * partner)
    assert ((lam >= -1e-9) & (lam <= 1 + 1e-9)).all()


def test_mixup_lambda_follows_beta_moments():
    # Two-point batch: rows 0 and 1 at 0 and 1, so a mixed row's value is lam or 1 - lam.
    base = torch.tensor([[0.0], [1.0]]).repeat(10000, 1)
    out = mixup(base, 0.5, torch.Generator().manual_seed(2)).flatten()
    values = out[out.ne(0) & out.ne(1)]  # rows mixed with a row of the other value
    # symmetric Beta(0.5, 0.5): mean 1/2, variance 1/8
    assert abs(values.mean().item() - 0.5) < 0.02
    assert abs(values.var().item() - 0.125) < 0.01


def test_gaussian_noise_has_requested_std():
    x = torch.zeros(4000, 50)
    out = gaussian_noise(x, 0.3, torch.Generator().manual_seed(0))
    assert abs(out.std().item() - 0.3) < 0.005
    assert abs(out.mean().item()) < 0.005


def test_dim_dropout_zeroes_the_requested_fraction():
    x = torch.ones(1000, 100)
    out = dim_dropout(x, 0.2, torch.Generator().manual_seed(0))
    assert abs((out == 0).float().mean().item() - 0.2) < 0.01
    assert set(out.unique().tolist()) == {0.0, 1.0}


def test_parse_and_apply_pipeline_is_reproducible():
    augs = parse_augmentations("mixup:0.2, noise:0.05,dropout:0.1")
    assert augs == [("mixup", 0.2), ("noise", 0.05), ("dropout", 0.1)]
    x = torch.randn(32, 8, generator=torch.Generator().manual_seed(0))
    a = apply_augmentations(x, augs, torch.Generator().manual_seed(5))
    b = apply_augmentations(x, augs, torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    with pytest.raises(ConfigError, match="unknown augmentation 'flip'; valid: mixup, noise, dropout"):
        parse_augmentations("flip:1")
    with pytest.raises(ConfigError, match="needs a numeric strength"):
        parse_augmentations("noise")
