"""Runs with a subspace residual and a base field fitted to the training rows: what the trainer
builds, what the checkpoint keeps and what load_run rebuilds; config errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from flowstudy.errors import ConfigError
from flowstudy.flows.gaussian_base import WithBaseField, ledoit_wolf
from flowstudy.flows.subspace import SubspaceResidual
from flowstudy.train import Trainer
from flowstudy.run import load_run
from flowstudy.train.config import resolve_config

pytestmark = pytest.mark.usefixtures("one_thread")


def _train_rows(run, cfg) -> torch.Tensor:
    rows = torch.from_numpy(np.load(cfg.data.rsplit(":", 1)[0] + "/train.npy"))
    return run.standardizer.transform(rows.double())


def test_subspace_run_reloads_the_field_it_trained(tmp_path, tiny_config):
    cfg = tiny_config(steps=20, base_field="gaussian", base_fit="train", residual_rank=4, residual_scale=0.5, aug=["noise:0.3"])
    trainer = Trainer(cfg, tmp_path / "run", progress=False)
    trainer.fit()
    run = load_run(tmp_path / "run", checkpoint="last", device="cpu")
    model = run.model
    assert isinstance(model, SubspaceResidual) and model.net.rank == 4 and model.net.reads == "subspace"
    assert model.net.net.input_dim == 4 and float(model.scale) == 0.5
    assert run.checkpoint["residual"] == {"rank": 4, "reads": "subspace", "scale": 0.5}
    x, t = torch.randn(32, 16), torch.rand(32)
    with torch.no_grad():
        torch.testing.assert_close(model(x, t), trainer.ema_field.eval()(x, t))
        assert (model(x, t) - model.base(x, t)).abs().max() > 0  # the network trained and acts
    # base_fit = "train": the base is the Ledoit-Wolf fit of the training rows, not of augmented ones
    cov, _ = ledoit_wolf(_train_rows(run, cfg))
    base_cov = model.base.eigvecs.double() @ torch.diag(model.base.eigvals.double()) @ model.base.eigvecs.double().T
    torch.testing.assert_close(base_cov, cov, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("solver", ["euler", "midpoint", "rk4"])
def test_eigenbasis_sampling_gives_the_plain_fields_samples(tmp_path, tiny_config, solver):
    from flowstudy.flows.subspace import EigenbasisFlow
    from flowstudy.sampling import sample_standardized

    cfg = tiny_config(steps=30, lr=3e-3, base_field="gaussian", base_fit="train", residual_rank=4, residual_scale=0.7, aug=["noise:0.3"])
    Trainer(cfg, tmp_path / "run", progress=False).fit()
    run = load_run(tmp_path / "run", checkpoint="last", device="cpu")
    flow = EigenbasisFlow.of(run.model)
    assert flow is not None
    # the two pieces are the field in the eigenbasis, dw/dt = Rᵀ v(R w, t): the first 4 coordinates
    # from themselves alone, the other 12 from the base alone
    w, t = torch.randn(64, 16, generator=torch.Generator().manual_seed(1)), torch.rand(64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        x = flow.from_eigen(w)
        assert (run.model(x, t) - run.model.base(x, t)).abs().max() > 1e-3  # the residual acts
        expected = flow.to_eigen(run.model(x, t))
        torch.testing.assert_close(flow.subspace_velocity(w[:, :4], t), expected[:, :4], atol=2e-5, rtol=1e-5)
        torch.testing.assert_close(flow.complement_velocity(w[:, 4:], t), expected[:, 4:], atol=2e-5, rtol=1e-5)
    fast, nfe = sample_standardized(run, 300, solver=solver, steps=10, seed=5)
    plain, nfe_plain = sample_standardized(run, 300, solver=solver, steps=10, seed=5, eigenbasis=False)
    assert nfe == nfe_plain
    torch.testing.assert_close(fast, plain, atol=5e-5, rtol=1e-5)
    assert (plain - sample_standardized(run, 300, solver=solver, steps=10, seed=6)[0]).abs().max() > 0.1  # the seed matters


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_eigenbasis_sampling_replayed_as_a_graph_on_gpu(tmp_path, tiny_config, precision):
    from flowstudy.sampling import sample_standardized

    cfg = tiny_config(steps=30, lr=3e-3, device="cuda", base_field="gaussian", base_fit="train", residual_rank=4, aug=["noise:0.3"])
    Trainer(cfg, tmp_path / "run", progress=False).fit()
    run = load_run(tmp_path / "run", checkpoint="last", device="cuda")
    kwargs = dict(solver="midpoint", steps=10, seed=5, precision=precision)
    graph, _ = sample_standardized(run, 500, batch_size=256, **kwargs)  # two batch sizes: two graphs
    plain, _ = sample_standardized(run, 500, batch_size=256, graph=False, eigenbasis=False, **kwargs)
    tol = 5e-5 if precision == "fp32" else 5e-2
    torch.testing.assert_close(graph, plain, atol=tol, rtol=tol)


def test_eigenbasis_form_only_for_residuals_that_read_the_subspace():
    from flowstudy.flows.gaussian_base import GaussianBaseField
    from flowstudy.flows.paths import Straight
    from flowstudy.flows.subspace import EigenbasisFlow
    from flowstudy.models import create_model

    rows = torch.randn(100, 8, generator=torch.Generator().manual_seed(0)) * torch.linspace(2, 0.5, 8)
    base = GaussianBaseField.fit(rows, Straight())
    assert EigenbasisFlow.of(SubspaceResidual.around(create_model("mlp-tiny", input_dim=8), base, 3, reads="full")) is None
    assert EigenbasisFlow.of(WithBaseField(create_model("mlp-tiny", input_dim=8), base)) is None
    assert EigenbasisFlow.of(create_model("mlp-tiny", input_dim=8)) is None
    assert EigenbasisFlow.of(SubspaceResidual.around(create_model("mlp-tiny", input_dim=3), base, 3)) is not None


def test_augmented_base_fit_is_wider_and_the_default(tmp_path, tiny_config):
    cfg = tiny_config(steps=1, lr=1e-12, base_field="gaussian", aug=["noise:0.3"])
    assert cfg.base_fit == "augmented" and cfg.residual() is None
    Trainer(cfg, tmp_path / "run", progress=False).fit()
    run = load_run(tmp_path / "run", device="cpu")
    assert isinstance(run.model, WithBaseField)
    cov, _ = ledoit_wolf(_train_rows(run, cfg))
    # noise 0.3 adds ~0.09 per standardised direction (the std floor makes some a little wider)
    assert float(run.model.base.eigvals.sum() - cov.trace()) / 16 == pytest.approx(0.09, rel=0.35)


def test_every_recipe_learns_a_subspace_residual_over_the_gaussian_fit():
    for arch in ("mlp", "unet", "unet-small", "dit", "dit-tiny", "mamba", "mamba-tiny", "mamba-merged"):
        cfg = resolve_config(None, {"arch": arch})
        assert cfg.base_field == "gaussian" and cfg.base_fit == "train" and cfg.residual() is not None
    for arch in ("dit", "mamba"):
        assert resolve_config(None, {"arch": arch}).model == {"chunk_size": 8}  # 8 tokens of the 64 coordinates


def test_turning_the_residual_off_drops_the_recipes_subspace_settings():
    # residual_rank 0: the whole space, over the base field; the recipe's tokens of 8 and base fit go too
    cfg = resolve_config(None, {"arch": "mamba", "residual_rank": 0})
    assert cfg.residual() is None and cfg.base_field == "gaussian" and cfg.base_fit == "augmented" and cfg.model == {}
    # base_field none without a rank: the network alone, with the recipe's other values
    cfg = resolve_config(None, {"arch": "dit", "base_field": "none"})
    assert cfg.residual() is None and cfg.model == {} and cfg.steps == 3000 and cfg.aug == ["noise:0.4"]
    # a rank named beside base_field none is still an error, not silently dropped
    with pytest.raises(ConfigError, match="residual_rank 32 needs base_field = 'gaussian'; got 'none'"):
        resolve_config(None, {"arch": "mamba", "base_field": "none", "residual_rank": 32})
    # a user's model options stay
    assert resolve_config(None, {"arch": "mamba", "residual_rank": 0, "model": {"chunk_size": 32}}).model == {"chunk_size": 32}


def test_residual_settings_are_checked():
    with pytest.raises(ConfigError, match="residual_rank 8 needs base_field = 'gaussian'; got 'none'"):
        resolve_config(None, {"residual_rank": 8, "base_field": "none"})
    with pytest.raises(ConfigError, match="residual_rank must be an integer >= 1; got -2"):
        resolve_config(None, {"residual_rank": -2, "base_field": "gaussian"})
    with pytest.raises(ConfigError, match="residual_input must be one of subspace, full; got 'x'"):
        resolve_config(None, {"residual_input": "x"})
    with pytest.raises(ConfigError, match="base_fit must be one of augmented, train; got 'raw'"):
        resolve_config(None, {"base_fit": "raw"})


def test_study_files_take_the_residual_options_as_axes():
    from flowstudy.study.spec import parse_spec

    spec = parse_spec(
        {
            "study": {"name": "t", "seeds": [0]},
            "base": {"data": "some/dir:train", "arch": "mlp", "select_by": "nll", "residual_scales": [0.0, 1.0]},
            "axes": {"residual_rank": [32, 128], "base_fit": ["train", "augmented"]},
        },
        source="t.toml",
    )
    got = [(c.config.residual_rank, c.config.base_fit, c.config.select_by, c.config.residual_scales) for c in spec.cells]
    assert got == [(r, f, "nll", [0.0, 1.0]) for r in (32, 128) for f in ("train", "augmented")]


def test_train_command_takes_the_residual_options(tiny_data, tmp_path):
    import json

    from flowstudy.cli import main

    run = tmp_path / "run"
    code = main(
        ["train", "--data", f"{tiny_data}:train", "--arch", "mlp-tiny", "--steps", "20", "--batch-size", "32", "--device", "cpu",
         "--base-field", "gaussian", "--base-fit", "train", "--residual-rank", "3", "--residual-input", "full",
         "--select-by", "nll", "--residual-scales", "0", "--residual-scales", "1", "--out", str(run), "--quiet"]
    )
    assert code == 0
    config = json.loads((run / "config.json").read_text())
    assert (config["base_fit"], config["residual_rank"], config["residual_input"]) == ("train", 3, "full")
    assert (config["select_by"], config["residual_scales"]) == ("nll", [0.0, 1.0])
    model = load_run(run, device="cpu").model
    assert isinstance(model, SubspaceResidual) and model.net.rank == 3 and model.net.net.input_dim == 16


def test_subspace_run_steps_in_its_bases_eigenbasis(tmp_path, tiny_config):
    """The step's rows and field are the run's, rotated into the base's eigenbasis and cut to the k
    leading coordinates: on the same draws the whole loss is (k / D) x the step's loss plus a term
    without parameters, so the gradients are the whole step's; runs that cannot rotate step in data
    coordinates, and say why."""
    from flowstudy.flows.subspace import EigenSubspaceNet
    from flowstudy.train.eigen_step import eigenbasis_refusal, leading_refusal

    cfg = tiny_config(steps=5, base_field="gaussian", base_fit="train", residual_rank=4, aug=["noise:0.3"])
    trainer = Trainer(cfg, tmp_path / "run", progress=False)
    trainer.fit()
    space, rotation, k, dim = trainer.space, trainer.space.rotation, 4, 16
    assert isinstance(space.net, EigenSubspaceNet) and eigenbasis_refusal(trainer.model, trainer.augmentations) is None
    assert leading_refusal(trainer.model, trainer.flow, dim) is None
    torch.testing.assert_close(space.x1, (trainer.train_x1 @ rotation)[:, :k])
    assert space.loss_scale == k / dim and space.loss_offset > 0
    full_base = trainer.base.in_eigenbasis()

    def losses(x0: torch.Tensor, rows: torch.Tensor, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(whole loss in data coordinates, the step's loss, the D - k coordinates' term), one draw of t."""
        whole = trainer.flow.loss(trainer.field, rows, x0, generator=torch.Generator().manual_seed(seed))
        w1, w0 = rows @ rotation, x0 @ rotation
        step = trainer.flow.loss(space.field, w1[:, :k], w0[:, :k], generator=torch.Generator().manual_seed(seed))
        t = torch.rand(rows.shape[0], generator=torch.Generator().manual_seed(seed))  # the loss's one draw (straight path, given x0)
        x_t = (1 - t[:, None]) * w0 + t[:, None] * w1
        rest = (full_base(x_t[:, k:], t, dims=slice(k, None)) - (w1 - w0)[:, k:]).square().sum(1).mean() / dim
        return whole, step, rest

    x0 = torch.randn(32, dim, generator=torch.Generator().manual_seed(0))
    whole, step, rest = losses(x0, trainer.train_x1[:32])
    torch.testing.assert_close(whole, step * k / dim + rest, atol=1e-6, rtol=1e-5)
    params = list(trainer.model.parameters())
    grads = [torch.autograd.grad(loss, params) for loss in (whole, step * k / dim)]
    for a, b in zip(*grads):
        torch.testing.assert_close(b, a, atol=1e-7, rtol=1e-5)
    assert any(float(g.abs().max()) > 0 for g in grads[0])
    # the logged loss's offset is the D - k coordinates' expected term (here over the raw rows:
    # their augmentation adds noise 0.3 to the rows the offset saw)
    generator = torch.Generator().manual_seed(7)
    noisy = [
        losses(torch.randn(32, dim, generator=generator), trainer.train_x1[torch.randint(256, (32,), generator=generator)] + 0.3 * torch.randn(32, dim, generator=generator), seed)[2]
        for seed in range(400)
    ]
    assert float(torch.stack(noisy).mean()) == pytest.approx(space.loss_offset, rel=0.02)  # Monte Carlo: < 1 % each
    # the step trains the run's own weights (what the checkpoint saves), not a copy
    assert [id(p) for p in space.field.parameters()] == [id(p) for p in trainer.model.parameters()]
    initial = Trainer(cfg, tmp_path / "init", progress=False)
    initial.setup(None)
    assert any(not torch.equal(a, b) for a, b in zip(trainer.model.parameters(), initial.model.parameters()))
    # exact OT pairs by distances over every coordinate: eigen-coordinates, all of them
    ot = Trainer(tiny_config(steps=2, flow="otcfm", base_field="gaussian", base_fit="train", residual_rank=4), tmp_path / "ot", progress=False)
    ot.fit()
    assert "ExactOT" in leading_refusal(ot.model, ot.flow, dim) and ot.space.x1.shape[1] == dim and ot.space.rotation is not None
    assert (ot.space.loss_scale, ot.space.loss_offset) == (1.0, 0.0)
    refusals = {
        "dropout": dict(aug=["noise:0.3", "dropout:0.1"]),
        "whole state": dict(residual_input="full"),
        "not a subspace residual": dict(residual_rank=None),
    }
    for k, (reason, change) in enumerate(refusals.items()):
        other = Trainer(tiny_config(steps=2, **{**dict(base_field="gaussian", base_fit="train", residual_rank=4), **change}), tmp_path / f"r{k}", progress=False)
        other.fit()
        assert other.space.rotation is None and other.space.field is other.field and reason in eigenbasis_refusal(other.model, other.augmentations)
    off = Trainer(cfg, tmp_path / "off", progress=False, eigenbasis=False)
    off.fit()
    assert off.space.rotation is None and off.space.x1 is off.train_x1
