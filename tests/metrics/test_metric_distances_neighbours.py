"""Chunked distances match a float64 brute force; fidelity/novelty behave as defined."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from flowstudy.errors import DataError
from flowstudy.metrics import NeighbourReference, half_splits, neighbour_ratios
from flowstudy.metrics import distances
from flowstudy.metrics.distances import nearest_distances, nearest_distances_within
from flowstudy.metrics.seeding import derived_rng
from flowstudy.metrics.splits import reference_masks


def _gauss(rng, n, d, scale=1.0, shift=0.0):
    return shift + scale * rng.standard_normal((n, d))


@pytest.fixture
def tiny_budget(monkeypatch):
    """Force many small chunks so the chunking code paths run."""
    monkeypatch.setattr(distances, "DEFAULT_BUDGET_BYTES", 8 * 64)


def test_nearest_distances_match_brute_force(tiny_budget):
    rng = np.random.default_rng(1)
    a, b = torch.from_numpy(_gauss(rng, 37, 5)), torch.from_numpy(_gauss(rng, 23, 5))
    ref = torch.cdist(a, b).sort(dim=1).values[:, :3]  # [37, 3]
    torch.testing.assert_close(nearest_distances(a, b, 3), ref, rtol=1e-12, atol=1e-12)
    own = torch.cdist(a, a) + torch.diag(torch.full((37,), float("inf"), dtype=torch.float64))
    torch.testing.assert_close(nearest_distances(a, a, 2, exclude_self=True), own.sort(dim=1).values[:, :2])


def test_nearest_within_subsets_match_brute_force(tiny_budget):
    rng = np.random.default_rng(2)
    a, b = torch.from_numpy(_gauss(rng, 19, 4)), torch.from_numpy(_gauss(rng, 30, 4))
    masks = torch.from_numpy(rng.random((6, 30)) < 0.4)
    masks[:, 0] = True
    full = torch.cdist(a, b)  # [19, 30]
    ref = torch.stack([full[:, m].min(dim=1).values for m in masks])  # [6, 19]
    torch.testing.assert_close(nearest_distances_within(a, b, masks), ref, rtol=1e-12, atol=1e-12)


def test_copied_rows_are_at_distance_exactly_zero():
    rng = np.random.default_rng(3)
    b = torch.from_numpy(_gauss(rng, 50, 256, scale=30.0))  # large norms: matmul form alone leaves ~1e-6
    assert torch.equal(nearest_distances(b[::3], b)[:, 0], torch.zeros(17, dtype=torch.float64))


def test_half_splits_are_disjoint_seeded_and_prefix_stable():
    splits = half_splits(101, 5, seed=7)
    for sp in splits:
        assert len(sp.real) == 50 and len(sp.reference) == 51
        assert np.array_equal(np.sort(np.concatenate([sp.real, sp.reference])), np.arange(101))
    again = half_splits(101, 2, seed=7)
    assert all(np.array_equal(x.real, y.real) for x, y in zip(splits, again))
    assert not np.array_equal(splits[0].real, splits[1].real)
    assert reference_masks(splits, 101).sum(dim=1).tolist() == [51] * 5
    with pytest.raises(DataError, match="at least 4 rows"):
        half_splits(3, 2, seed=0)


def test_derived_streams_do_not_replay_the_data_stream():
    # default_rng([0, 0]) replays default_rng(0); a tagged stream must not
    assert np.array_equal(np.random.default_rng([0, 0]).random(3), np.random.default_rng(0).random(3))
    assert not np.array_equal(derived_rng(0, "half-split", 0).random(3), np.random.default_rng(0).random(3))
    assert not np.array_equal(derived_rng(0, "a").random(3), derived_rng(0, "b").random(3))


def test_same_distribution_gives_ratios_near_one():
    rng = np.random.default_rng(0)
    train, held, samples = _gauss(rng, 800, 64), _gauss(rng, 400, 64), _gauss(rng, 400, 64)
    r = neighbour_ratios(samples, train, held, n_splits=10, seed=0)
    assert r.n_splits == 10 and len(r.fidelity_per_split) == 10
    assert abs(r.fidelity - 1.0) < 0.03 and abs(r.novelty - 1.0) < 0.03
    assert 0 < r.fidelity_std < 0.03


def test_copies_have_novelty_zero_and_wide_noise_has_fidelity_above_one():
    rng = np.random.default_rng(1)
    train, held = _gauss(rng, 500, 32).astype(np.float32), _gauss(rng, 200, 32).astype(np.float32)
    assert neighbour_ratios(train[:300], train, held, n_splits=4).novelty == 0.0
    wide = neighbour_ratios(_gauss(rng, 300, 32, scale=3.0), train, held, n_splits=4)
    assert wide.fidelity > 2.0 and wide.novelty > 2.0


def test_heldout_half_scores_one_exactly():
    rng = np.random.default_rng(4)
    train, held = torch.randn(300, 16, dtype=torch.float64), torch.from_numpy(_gauss(rng, 101, 16))
    ref = NeighbourReference(train, held, half_splits(101, 8, seed=3))
    r = ref.heldout_ratios()
    assert r.fidelity == 1.0 and r.novelty == 1.0 and r.fidelity_std == 0.0 and r.novelty_std == 0.0
    # and the ratio function on the real half of one split reproduces 1.0 for that split
    one = NeighbourReference(train, held, half_splits(101, 1, seed=3))
    assert one.ratios(held[torch.from_numpy(one.splits[0].real)]).fidelity == pytest.approx(1.0, abs=1e-12)


def test_leaking_split_is_refused():
    train = torch.randn(100, 8, dtype=torch.float64)
    with pytest.raises(DataError, match="copies of training rows"):
        neighbour_ratios(train[:10], train, train[:40], n_splits=2)
