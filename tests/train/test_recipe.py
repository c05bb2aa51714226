"""recipe = "auto": which runs search, which settings it may change, how it scores and chooses."""

from __future__ import annotations

import json

import pytest
import torch

from flowstudy.train.config import resolve_config
from flowstudy.train.recipe import CANDIDATES, Candidate, CandidateScore, _best, _gaussian_scores, candidates_for


def test_the_builtin_set_keeps_its_named_recipe_and_other_data_searches(tiny_data):
    sonar = resolve_config(None, {"arch": "mlp"})
    assert (sonar.recipe, sonar.residual_rank, sonar.aug, sonar.base_field) == ("sonar", 128, ["noise:0.8"], "gaussian")
    own = resolve_config(None, {"arch": "mlp", "data": f"{tiny_data}:train"})
    # the search sets base field, rank and noise; steps, lr and batch size still come from the recipe
    assert (own.recipe, own.recipe_fixed, own.steps, own.lr) == ("auto", [], 2000, 1e-3)
    assert (own.residual_rank, own.aug, own.base_field) == (None, [], "none")
    zoo = resolve_config(None, {"arch": "mlp", "data": "zoo:clusters-768:train", "aug": ["noise:0.2"]})
    assert (zoo.recipe, zoo.recipe_fixed, zoo.aug) == ("auto", ["aug"], ["noise:0.2"])
    named = resolve_config(None, {"arch": "mlp", "data": f"{tiny_data}:train", "recipe": "sonar"})
    assert (named.recipe, named.residual_rank) == ("sonar", 128)
    plain = resolve_config(None, {"arch": "mlp", "data": f"{tiny_data}:train", "recipe": "none"})
    assert (plain.recipe, plain.residual_rank, plain.aug, plain.steps) == ("none", None, [], 2000)
    with pytest.raises(ValueError, match="recipe must be one of auto, sonar, none; got 'fast'"):
        resolve_config(None, {"data": f"{tiny_data}:train", "recipe": "fast"})


def test_the_user_s_settings_narrow_the_search(tiny_data):
    search = lambda **given: candidates_for(resolve_config(None, {"data": f"{tiny_data}:train", **given}), 1024)  # noqa: E731
    assert search() == list(CANDIDATES)
    assert search(base_field="none") == [Candidate("none", None, 0.0)]
    assert search(residual_rank=64) == [c for c in CANDIDATES if c.rank == 64]
    # a fixed augmentation is laid over every candidate: those that differed only in noise merge
    assert search(aug=["mixup:0.2"]) == [Candidate("gaussian", 16, 0.0), Candidate("gaussian", 64, 0.0),
                                          Candidate("gaussian", 128, 0.4), Candidate("none", None, 0.0)]
    # at D = 16 every rank is 16: one candidate per noise strength, and the whole-space one
    small = candidates_for(resolve_config(None, {"data": f"{tiny_data}:train"}), 16)
    assert [(c.rank, c.noise) for c in small] == [(16, 0.0), (64, 0.4), (128, 0.8), (None, 0.0)]


def test_the_choice_is_the_smallest_sum_of_ranks_ties_to_the_lower_nll():
    a, b, c = (Candidate("gaussian", r, 0.0) for r in (16, 64, 128))
    scores = [CandidateScore(a, -0.50, 3.0), CandidateScore(b, -0.40, 1.0), CandidateScore(c, -0.45, 2.0)]
    # ranks (nll + distance): a 0 + 2, b 2 + 0, c 1 + 1: all 2; the lowest NLL wins the tie
    assert _best(scores) == a
    scores[2] = CandidateScore(c, -0.45, 0.5)  # c: 1 + 0
    assert _best(scores) == c


def test_a_zero_residual_scores_the_gaussian_fit_s_nll(tiny_data):
    """The two NLLs the search compares agree where they must: a candidate whose residual is zero
    is the Gaussian fit, so its ODE NLL equals the closed form up to the solver's error."""
    from flowstudy.data.resolve import load_config_splits
    from flowstudy.data import Standardizer
    from flowstudy.flows import create_flow
    from flowstudy.flows.gaussian_base import GaussianBaseField
    from flowstudy.flows.subspace import SubspaceResidual
    from flowstudy.models import create_model
    from flowstudy.train.recipe import SEARCH_ROWS
    from flowstudy.train.selection import validation_nll

    config = resolve_config(None, {"data": f"{tiny_data}:train", "arch": "mlp-tiny"})
    train, val = load_config_splits(config)
    closed, _ = _gaussian_scores(config, train, val)
    space = Standardizer.fit(torch.from_numpy(train.embeddings), floor_ratio=config.std_floor)
    x, v = space.transform(torch.from_numpy(train.embeddings)).float(), space.transform(torch.from_numpy(val.embeddings[:SEARCH_ROWS])).float()
    base = GaussianBaseField.fit(x, create_flow("icfm").path)
    field = SubspaceResidual.around(create_model("mlp-tiny", input_dim=8), base, rank=8)  # output layer zero at init
    coarse, fine = validation_nll(field, v, steps=10), validation_nll(field, v, steps=40)
    # RK4 is 4th order: the 10-step error is (1 + 1/255) x |coarse - fine|; float32 states add ~1e-6
    assert abs(coarse - closed) <= 1.1 * abs(coarse - fine) + 1e-5


def test_auto_prints_its_choice_and_trains_it(tiny_data, tmp_path, capsys):
    import flowstudy as fs

    run = fs.fit(f"{tiny_data}:train", out=tmp_path / "run", arch="mlp-tiny", steps=12, batch_size=64, val_every=12, device="cpu")
    chosen = json.loads((tmp_path / "run" / "recipe.json").read_text())
    err = capsys.readouterr().err
    assert chosen["message"].split(" -- ")[0] in err and "among 4 candidates" in chosen["message"]
    assert chosen["search_steps"] == 12  # no longer than the run itself
    scored = chosen["candidates"]
    nll = sorted(c["val_nll"] for c in scored)
    distance = sorted(c["sample_distance"] for c in scored)
    rank = {c["candidate"]: (nll.index(c["val_nll"]) + distance.index(c["sample_distance"]), c["val_nll"]) for c in scored}
    assert chosen["chosen"] == min(rank, key=rank.get)
    config = run.config
    trained = Candidate(config["base_field"], config["residual_rank"], float(config["aug"][0].split(":")[1]) if config["aug"] else 0.0)
    assert trained.describe().replace("rank 16", f"rank {trained.rank}") == chosen["chosen"].replace("rank 64", "rank 16").replace("rank 128", "rank 16")
    assert config["recipe"] == "auto"
