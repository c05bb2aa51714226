"""The trainer learns, resumes exactly, stops on faults with clear messages and no lost work."""

from __future__ import annotations

import json
import os
import signal

import pytest
import torch

from flowstudy.errors import CheckpointError, TrainingError
from flowstudy.train import Trainer, TrainingInterrupted, load_checkpoint


from flowstudy.run import load_run


def _losses(run_dir):
    return [(r["step"], r["loss"]) for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines()) if "loss" in r]


def _val_losses(run_dir):
    return [(r["step"], r["val_loss"]) for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines()) if "val_loss" in r]


def test_training_lowers_validation_loss_and_writes_run_dir(tmp_path, tiny_config):
    trainer = Trainer(tiny_config(steps=200, val_every=50), tmp_path / "run", progress=False)
    result = trainer.fit()
    vals = _val_losses(tmp_path / "run")
    # An untrained network outputs zeros: its I-CFM loss is E|x1 - x0|^2 / D = 2 in standardised space.
    zero_loss = trainer.flow.loss(lambda x, t: torch.zeros_like(x), trainer.val_x1, generator=torch.Generator().manual_seed(0))
    assert 1.8 < float(zero_loss) < 2.2
    assert vals[-1][1] < 0.6 * float(zero_loss)
    assert vals[-1][1] < vals[0][1]
    assert result.best_val_loss == min(v for _, v in vals)
    for name in ("config.json", "metrics.jsonl", "standardizer.pt", "checkpoints/best.pt", "checkpoints/last.pt"):
        assert (tmp_path / "run" / name).exists(), name
    state = load_checkpoint(tmp_path / "run/checkpoints/last.pt")
    assert state["finished"] and state["step"] == 200
    assert state["standardizer"]["mean"].shape == (16,)
    assert json.loads((tmp_path / "run/config.json").read_text())["versions"]["torch"] == torch.__version__


class _SigtermAfterFirstValidation:
    """Delivers SIGTERM to this process right after the first validation (step 20)."""

    def on_validation(self, trainer, step, val_loss):
        if step == 20:
            os.kill(os.getpid(), signal.SIGTERM)


@pytest.mark.parametrize("base_field, residual_rank", [("none", None), ("gaussian", None), ("gaussian", 4)])  # rank 4: eigen-coordinate steps
def test_resume_reproduces_uninterrupted_run(tmp_path, tiny_config, base_field, residual_rank):
    cfg = tiny_config(steps=60, val_every=20, aug=["mixup:0.3", "noise:0.05"], base_field=base_field, residual_rank=residual_rank)
    Trainer(cfg, tmp_path / "full", progress=False).fit()
    # The handler lets the step in progress finish: the run stops after step 21, between records.
    with pytest.raises(TrainingInterrupted, match=r"interrupted by SIGTERM at step 21/60.*--resume"):
        Trainer(cfg, tmp_path / "cut", callbacks=[_SigtermAfterFirstValidation()], progress=False).fit()
    assert load_checkpoint(tmp_path / "cut/checkpoints/last.pt")["step"] == 21
    Trainer(cfg, tmp_path / "cut", progress=False).fit(resume=True)
    full = load_checkpoint(tmp_path / "full/checkpoints/last.pt")
    cut = load_checkpoint(tmp_path / "cut/checkpoints/last.pt")
    for key in full["model"]:
        assert torch.equal(full["model"][key], cut["model"][key]), key
        assert torch.equal(full["ema"]["model"][key], cut["ema"]["model"][key]), key
    assert _val_losses(tmp_path / "full") == _val_losses(tmp_path / "cut")
    assert _losses(tmp_path / "full") == _losses(tmp_path / "cut")
    if base_field == "gaussian":  # restored from the checkpoint, not refitted
        for key in ("mean", "eigvecs", "eigvals"):
            assert torch.equal(full["base_field"][key], cut["base_field"][key]), key
    else:
        assert full["base_field"] is None


@pytest.mark.gpu
def test_resume_on_cuda_reproduces_uninterrupted_run(tmp_path, tiny_config):
    cfg = tiny_config(steps=60, val_every=20, device="cuda", precision="fp32")
    Trainer(cfg, tmp_path / "full", progress=False).fit()
    with pytest.raises(TrainingInterrupted):
        Trainer(cfg, tmp_path / "cut", callbacks=[_SigtermAfterFirstValidation()], progress=False).fit()
    Trainer(cfg, tmp_path / "cut", progress=False).fit(resume=True)
    assert _val_losses(tmp_path / "full") == pytest.approx(_val_losses(tmp_path / "cut"), rel=1e-5)


def test_resume_errors(tmp_path, tiny_config):
    cfg = tiny_config(steps=20)
    with pytest.raises(CheckpointError, match="nothing to resume"):
        Trainer(cfg, tmp_path / "none", progress=False).fit(resume=True)
    Trainer(cfg, tmp_path / "done", progress=False).fit()
    with pytest.raises(CheckpointError, match="already finished at step 20 of 20"):
        Trainer(cfg, tmp_path / "done", progress=False).fit(resume=True)
    with pytest.raises(CheckpointError, match="already holds a run; continue it with --resume"):
        Trainer(cfg, tmp_path / "done", progress=False).fit()


class _NaNAfter(Trainer):
    def train_step(self):
        loss, grad_norm = super().train_step()
        if self.step + 1 > 33:
            loss = loss * float("nan")
        return loss, grad_norm


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, tiny_config):
    with pytest.raises(TrainingError, match=r"non-finite \(NaN/inf\) at step 34.*last good checkpoint .*last\.pt \(step 20\)"):
        _NaNAfter(tiny_config(steps=60, val_every=20), tmp_path / "nan", progress=False).fit()
    state = load_checkpoint(tmp_path / "nan/checkpoints/last.pt")
    assert state["step"] == 20
    assert all(torch.isfinite(v).all() for v in state["model"].values())


def test_out_of_memory_suggests_smaller_batch(tmp_path, tiny_config, monkeypatch):
    # A real CUDA OOM cannot happen on a CPU machine: raise the exception torch raises.
    trainer = Trainer(tiny_config(batch_size=64), tmp_path / "oom", progress=False)

    def boom(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    from flowstudy.flows import FlowMethod

    monkeypatch.setattr(FlowMethod, "loss", boom)
    with pytest.raises(TrainingError, match="CUDA out of memory at batch size 64; try --batch-size 32"):
        trainer.fit()


class _WorseningValidation(Trainer):
    """Validation losses 1.0, 0.9, then rising: the best is the second validation."""

    def validation_loss(self):
        self._calls = getattr(self, "_calls", 0) + 1
        return [1.0, 0.9, 0.95, 0.97, 0.99, 1.1, 1.2][self._calls - 1]


def test_early_stopping_with_patience(tmp_path, tiny_config):
    trainer = _WorseningValidation(tiny_config(steps=400, val_every=10, patience=2), tmp_path / "es", progress=False)
    result = trainer.fit()
    assert result.stopped_early and result.steps == 40  # two validations without improvement after step 20
    assert result.best_val_loss == 0.9
    state = load_checkpoint(tmp_path / "es/checkpoints/last.pt")
    assert state["finished"] and state["bad_evals"] == 2 and state["step"] == 40
    assert load_checkpoint(tmp_path / "es/checkpoints/best.pt")["step"] == 20


def test_load_run_returns_ema_model_and_standardizer(tmp_path, tiny_config):
    Trainer(tiny_config(steps=20), tmp_path / "r", progress=False).fit()
    run = load_run(tmp_path / "r", device="cpu")
    state = load_checkpoint(tmp_path / "r/checkpoints/best.pt")
    for key, value in run.model.state_dict().items():
        assert torch.equal(value, state["ema"]["model"][key])
    assert run.standardizer.dim == 16


def test_bad_checkpoints_are_named(tmp_path):
    good = tmp_path / "x.pt"
    torch.save({"weights": torch.zeros(3)}, good)
    with pytest.raises(CheckpointError, match=r"x\.pt: not a flowstudy checkpoint"):
        load_checkpoint(good)
    cut = tmp_path / "cut.pt"
    cut.write_bytes(good.read_bytes()[:40])
    with pytest.raises(CheckpointError, match=r"cut\.pt: cannot read checkpoint \(truncated"):
        load_checkpoint(cut)
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")
