"""The loop: exact resume, ask/tell round trip and all-or-nothing validation, methods, budget."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from flowstudy.errors import ConfigError, DataError
from flowstudy.guidance.loop import EXTERNAL, LoopConfig, Optimisation, read_scores
from flowstudy.guidance.methods.bo import turbo_length

from tests.guidance.toy import toy_prior, toy_score

pytest.importorskip("botorch")

FAST = {"n_candidates": 32}


def _config(method: str, **kw) -> LoopConfig:
    options = {"guided": {**FAST, "strength": 0.5}, "rank": FAST, "latent": FAST, "turbo": FAST, "linear": {"k": 3}}.get(method, {})
    base = dict(prior="toy", objective="python:tests.guidance.toy:toy_score", method=method, budget=14, q=3, n_init=5, seed=3, steps=6, pca_k=2, options=options)
    return LoopConfig(**{**base, **kw})


def _state(root, config):
    prior, _ = toy_prior(dim=4)
    return Optimisation.create_or_open(root, config, prior=prior)


def test_killed_run_resumes_to_what_an_uninterrupted_run_proposes(tmp_path):
    config = _config("guided", budget=11)
    whole = _state(tmp_path / "whole", config).run(toy_score)
    _state(tmp_path / "killed", config).run(toy_score, stop_after=8)  # initial 5 + one round of 3
    resumed = _state(tmp_path / "killed", config).run(toy_score)
    assert whole.n == resumed.n == 11
    np.testing.assert_array_equal(whole.z.numpy(), resumed.z.numpy())
    np.testing.assert_array_equal(whole.y.numpy(), resumed.y.numpy())
    np.testing.assert_array_equal(whole.round, [0] * 5 + [1] * 3 + [2] * 3)


@pytest.mark.parametrize("method", ["prior", "pool", "rank", "latent", "bo", "turbo", "linear"])
def test_every_method_spends_exactly_the_budget(tmp_path, method):
    options = {"bo": {"num_restarts": 1, "raw_samples": 16, "maxiter": 5}}.get(method)
    config = _config(method, budget=7, **({"options": options} if options else {}))
    history = _state(tmp_path, config).run(toy_score)  # 5 initial, then a round cut to the 2 left
    assert history.n == 7 and np.isfinite(history.y.numpy()).all()
    if method == "pool":  # training rows, never the same one twice
        assert len(set(history.train_row.tolist())) == 7 and (history.train_row >= 0).all()
    with pytest.raises(ConfigError, match="budget of 7 evaluations is spent"):
        _state(tmp_path, config).next_proposal()


def _files(root) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.iterdir())}


def test_ask_tell_round_trip_and_bad_input_leaves_the_state_untouched(tmp_path):
    state = _state(tmp_path, _config("guided", objective=EXTERNAL))
    with pytest.raises(DataError, match="no candidates pending"):
        state.tell(np.zeros(5))
    x = state.ask()
    assert x.shape == (5, 4) and np.array_equal(state.ask(), x)  # asking again hands out the same ones
    texts = [json.loads(line) for line in (tmp_path / "pending.jsonl").read_text().splitlines()]
    assert [t["candidate"] for t in texts] == list(range(5)) and all(t["text"].startswith("row ") for t in texts)
    before = _files(tmp_path)
    bad = [
        (np.array([0.1, np.nan, 0.2, 0.3, 0.4]), None, "rows \\[1\\] are NaN"),
        (read_scores("0.1,,0.3,0.4,0.5"), None, "rows \\[1\\] are NaN"),  # a missing score
        (np.zeros(4), None, "expected 5 scores"),
        (np.zeros((5, 2)), None, "flat list"),
        (np.zeros(5), np.zeros((5, 3)), r"shape \[n, 4\]"),
    ]
    for scores, candidates, message in bad:
        with pytest.raises(DataError, match=message):
            state.tell(scores, candidates)
        assert _files(tmp_path) == before
    y = toy_score(x)
    state.tell(y)
    h = state.history()
    np.testing.assert_array_equal(h.y.numpy(), y)
    np.testing.assert_array_equal(state.prior.to_original(h.z), x)
    assert not (tmp_path / "pending.npz").exists()
    x2 = state.ask(2)
    assert x2.shape == (2, 4)
    state.tell(toy_score(x2))
    assert state.history().n == 7 and list(state.history().round) == [0] * 5 + [1] * 2


def test_unknown_method_or_changed_configuration_is_refused_before_writing(tmp_path):
    with pytest.raises(ConfigError, match="unknown method 'nope'; valid: prior, pool, rank, guided"):
        _state(tmp_path / "a", _config("nope"))
    assert not (tmp_path / "a" / "config.json").exists()
    with pytest.raises(ConfigError, match="method 'guided': bad options"):
        _state(tmp_path / "b", _config("guided", options={"strenght": 1.0}))
    _state(tmp_path / "c", _config("prior"))
    with pytest.raises(ConfigError, match="holds a different optimisation \\(seed: 3 there, 4 now\\)"):
        _state(tmp_path / "c", _config("prior", seed=4))


def test_read_scores_from_text_json_and_npy(tmp_path):
    (tmp_path / "s.txt").write_text("0.5\n0.25\n")
    (tmp_path / "s.json").write_text("[1, 2]")
    np.save(tmp_path / "s.npy", np.array([3.0, 4.0]))
    assert read_scores(str(tmp_path / "s.txt")).tolist() == [0.5, 0.25]
    assert read_scores(str(tmp_path / "s.json")).tolist() == [1.0, 2.0]
    assert read_scores(str(tmp_path / "s.npy")).tolist() == [3.0, 4.0]
    with pytest.raises(DataError, match=r"score 1 \('x'\) .* is not a number"):
        read_scores("1,x")


def test_turbo_region_doubles_after_three_successes_and_halves_after_failures():
    import torch

    from flowstudy.guidance.history import History

    def history(round_best: list[float]) -> History:
        y = torch.tensor([0.0] + round_best, dtype=torch.float64)
        rounds = np.arange(len(y))
        return History(torch.zeros(len(y), 2), y, torch.zeros(len(y), 2), rounds, np.full(len(y), -1))

    assert turbo_length(history([1, 2, 3]), q=4, dim=2) == pytest.approx(1.6)
    # dim 8, q 4: fail_tol = 2; two failures halve the side
    assert turbo_length(history([1, 0, 0]), q=4, dim=8) == pytest.approx(0.4)


def test_sonar_decoder_without_the_package_says_what_to_install():
    import importlib.util

    from flowstudy.guidance.decode import sonar_decode

    if importlib.util.find_spec("sonar") is not None:
        pytest.skip("sonar-space is installed")
    with pytest.raises(ImportError, match=r"pip install 'flowstudy\[sonar\]'"):
        sonar_decode(np.zeros((1, 1024), np.float32), "text_sonar_basic_decoder")
