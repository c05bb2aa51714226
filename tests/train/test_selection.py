"""Selection by validation likelihood: the validation NLL against the Gaussian closed form, the
choice of the residual scale, and runs that pick best.pt by NLL."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from flowstudy.errors import ConfigError
from flowstudy.flows.gaussian_base import GaussianBaseField
from flowstudy.flows.paths import Straight
from flowstudy.flows.subspace import SubspaceResidual
from flowstudy.metrics.likelihood import gaussian_log_prob
from flowstudy.models import create_model
from flowstudy.train import Trainer
from flowstudy.run import load_run
from flowstudy.train.config import resolve_config
from flowstudy.train.selection import choose_scale, validation_nll

pytestmark = pytest.mark.usefixtures("one_thread")

D, K = 10, 3


def _rows(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, D, generator=g) * torch.linspace(3.0, 0.3, D)


def _field(weights: float) -> SubspaceResidual:
    torch.manual_seed(1)
    net = create_model("mlp-tiny", input_dim=K)
    if weights:
        for p in net.parameters():
            p.data.normal_(0.0, weights)
    return SubspaceResidual.around(net, GaussianBaseField.fit(_rows(400, 0), Straight()), K).eval()


def test_validation_nll_of_the_gaussian_field_is_its_closed_form():
    field, x = _field(0.0), _rows(30, 1)
    base = field.base
    expected = -float(gaussian_log_prob(x, base.mean, base.eigvecs, base.eigvals).mean()) / D
    assert validation_nll(field, x, steps=20) == pytest.approx(expected, abs=1e-4)


def test_choose_scale_takes_the_lowest_validation_nll_and_zero_is_the_gaussian():
    field, x = _field(0.15), _rows(30, 2)
    gaussian = validation_nll(_field(0.0), x)
    alpha, scores = choose_scale(field, x, [0.0, 0.5, 1.0])
    assert scores[0.0] == pytest.approx(gaussian, abs=1e-6)
    assert len(set(scores.values())) == 3  # the network changes the likelihood
    assert alpha == min(scores, key=scores.get) and float(field.scale) == alpha
    assert validation_nll(field, x) == pytest.approx(scores[alpha], abs=1e-7)  # left at the chosen alpha
    with pytest.raises(ConfigError, match="residual_scales needs a subspace residual"):
        choose_scale(create_model("mlp-tiny", input_dim=D), x, [0.0, 1.0])


def test_run_selects_by_nll_and_stores_the_chosen_scale(tmp_path, tiny_config):
    cfg = tiny_config(
        steps=40, base_field="gaussian", base_fit="train", residual_rank=4, aug=["noise:0.3"],
        select_by="nll", residual_scales=[0.0, 0.5, 1.0],
    )
    result = Trainer(cfg, tmp_path / "run", progress=False).fit()
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    nlls = [r["val_nll"] for r in records if "val_nll" in r]
    assert len(nlls) == 2 and result.best_val_loss == pytest.approx(min(nlls))
    best = load_run(tmp_path / "run", device="cpu")
    assert best.checkpoint["step"] == 20 * (1 + int(np.argmin(nlls)))
    chosen = json.loads((tmp_path / "run" / "scale_selection.json").read_text())
    assert set(chosen["val_nll_per_dim"]) == {"0.0", "0.5", "1.0"}
    assert float(best.model.scale) == chosen["chosen"] == best.checkpoint["residual"]["scale"]
    assert load_run(tmp_path / "run", checkpoint="last", device="cpu").checkpoint["residual"]["scale"] == chosen["chosen"]


def test_selection_settings_are_checked():
    with pytest.raises(ConfigError, match="residual_scales needs a subspace residual"):
        resolve_config(None, {"arch": "mamba", "base_field": "none", "residual_scales": [0.0, 1.0]})  # the network alone
    with pytest.raises(ConfigError, match="select_by must be one of loss, nll; got 'mmd'"):
        resolve_config(None, {"select_by": "mmd"})
