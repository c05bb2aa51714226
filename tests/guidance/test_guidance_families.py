"""Objective families beyond one cosine (maxcos:, reward:, noise) and the top-k bound: float64
references, the closed-form leave-one-out of ridge against refitting, errors naming the spec."""

from __future__ import annotations

import numpy as np
import pytest

from flowstudy.errors import ConfigError, DataError
from flowstudy.guidance.bounds import objective_bounds, topk_cosine_bound
from flowstudy.guidance.objectives import RIDGE_ALPHAS, TEXT_PROPERTIES, RidgeReward, parse_objective, target_rows


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_maxcos_is_the_larger_of_the_two_cosines_and_takes_noise(tiny_data):
    from flowstudy.data import load_dataset

    val = load_dataset(f"{tiny_data}:val").embeddings
    y = parse_objective(f"maxcos:{tiny_data}:val:3+40")(val[:50])
    expected = np.maximum(_unit(val[:50]) @ _unit(val[3:4])[0], _unit(val[:50]) @ _unit(val[40:41])[0])
    np.testing.assert_allclose(y, expected, rtol=1e-12)
    assert y[3] == pytest.approx(1.0, abs=1e-12) and y[40] == pytest.approx(1.0, abs=1e-12)
    noisy = parse_objective(f"maxcos:{tiny_data}:val:3+40,noise=0.02")(val[:50])
    assert 0 < np.abs(noisy - y).max() < 0.02 * 5  # 50 draws of N(0, 0.02^2) stay within 5 sigma
    np.testing.assert_array_equal(target_rows(f"maxcos:{tiny_data}:val:3+40"), val[[3, 40]])
    assert target_rows(f"cosine:{tiny_data}:val:3").shape == (1, 16) and target_rows("python:numpy:sum") is None
    with pytest.raises(ConfigError, match="expected maxcos:DATASPEC:ROW\\+ROW"):
        parse_objective(f"maxcos:{tiny_data}:val:3")
    with pytest.raises(ConfigError, match="row 99 is out of range"):
        parse_objective(f"maxcos:{tiny_data}:val:3+99")


def test_text_properties_count_words_and_clauses():
    text = "First add the costs, then divide: report the answer and check it"
    assert TEXT_PROPERTIES["words"](text) == 12
    assert TEXT_PROPERTIES["clauses"](text) == 4  # one, plus ',', ': ' and ' and ' (' then ' follows the comma)
    assert TEXT_PROPERTIES["clauses"]("Solve it.") == 1


def _ridge_data(n: int = 30, d: int = 8, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)) * np.linspace(3, 0.3, d) + 2.0
    return x, x @ rng.normal(size=d) + 0.5 * rng.normal(size=n)


def test_ridge_reward_is_the_penalised_least_squares_with_the_best_leave_one_out_penalty():
    x, y = _ridge_data()
    model = RidgeReward.fit(x, y)
    z = (x - x.mean(0)) / x.std(0)
    loo = {}
    for alpha in RIDGE_ALPHAS:  # refit without each row: the closed form must agree
        errs = []
        for i in range(len(y)):
            keep = np.arange(len(y)) != i
            zi, yi = z[keep], y[keep]
            w = np.linalg.solve(zi.T @ zi + alpha * np.eye(z.shape[1]), zi.T @ (yi - y.mean()))
            errs.append(y[i] - y.mean() - z[i] @ w)
        loo[alpha] = np.mean(np.square(errs))
    # the closed form keeps the full-data means (the standard shortcut); the refit above does the same
    assert model.alpha == min(loo, key=loo.get)
    assert model.loo_r2 == pytest.approx(1 - loo[model.alpha] / np.mean((y - y.mean()) ** 2), rel=1e-9)
    w = np.linalg.solve(z.T @ z + model.alpha * np.eye(z.shape[1]), z.T @ (y - y.mean()))
    np.testing.assert_allclose(model(x), y.mean() + z @ w, rtol=1e-10, atol=1e-10)
    with pytest.raises(DataError, match="ridge reward needs rows"):
        RidgeReward.fit(x, y[:-1])


def test_reward_spec_learns_a_text_property_and_is_deterministic(tmp_path):
    rng = np.random.default_rng(0)
    words = rng.integers(3, 12, size=60)
    x = rng.normal(size=(60, 5))
    x[:, 0] = words + 0.1 * rng.normal(size=60)  # the first coordinate carries the length
    np.save(tmp_path / "train.npy", x.astype(np.float32))
    (tmp_path / "train.txt").write_text("\n".join(" ".join(["w"] * int(n)) for n in words) + "\n")
    spec = f"reward:{tmp_path}:train:words"
    a, b = parse_objective(spec), parse_objective(spec)
    probe = x[:10].astype(np.float32)
    np.testing.assert_array_equal(a(probe), b(probe))
    assert np.corrcoef(a(probe), words[:10])[0, 1] > 0.99
    assert a.fn.loo_r2 > 0.95
    with pytest.raises(ConfigError, match="PROPERTY one of words, clauses"):
        parse_objective(f"reward:{tmp_path}:train:colour")
    np.save(tmp_path / "bare.npy", x.astype(np.float32))
    with pytest.raises(DataError, match="has no texts to learn 'words'"):
        parse_objective(f"reward:{tmp_path}:bare:words")


def test_topk_bound_is_one_with_every_direction_the_mean_with_none_and_matches_an_eigen_route():
    rng = np.random.default_rng(1)
    train = rng.normal(size=(50, 8)) * np.linspace(2, 0.2, 8) + 1.0
    targets = rng.normal(size=(4, 8)) + 1.0
    out = topk_cosine_bound(train, targets, ks=(0, 3, 8))
    np.testing.assert_allclose(out[8], 1.0, rtol=0, atol=1e-12)
    mean = train.mean(0)
    np.testing.assert_allclose(out[0], _unit(targets) @ _unit(mean[None])[0], rtol=1e-12)
    _, vec = np.linalg.eigh(np.cov(train.T))  # ascending eigenvalues: the last three columns
    est = mean + (targets - mean) @ vec[:, -3:] @ vec[:, -3:].T
    np.testing.assert_allclose(out[3], (_unit(est) * _unit(targets)).sum(1), rtol=1e-10)
    with pytest.raises(DataError, match=r"every k must lie in \[0, 8\]"):
        topk_cosine_bound(train, targets, ks=(9,))


def test_objective_bounds_cover_cosine_specs_only(tiny_data):
    from flowstudy.data import load_dataset

    train = load_dataset(f"{tiny_data}:train").embeddings
    out = objective_bounds(train, [f"cosine:{tiny_data}:val:2", "python:numpy:sum", f"maxcos:{tiny_data}:val:1+2"], ks=(1, 16))
    assert list(out) == [f"cosine:{tiny_data}:val:2"]
    assert out[f"cosine:{tiny_data}:val:2"][16] == pytest.approx(1.0, abs=1e-9)
