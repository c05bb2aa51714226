"""A stacked group of K members trains what K separate runs with the same configs train."""

from __future__ import annotations

import signal
from dataclasses import replace

import pytest
import torch

from flowstudy.errors import ConfigError
from flowstudy.train import Trainer, TrainingInterrupted, load_checkpoint, load_run
from flowstudy.train.stacked import StackedGroup


def _members(tiny_config, **extra):
    common = dict(arch="mlp-tiny", steps=10, batch_size=48, val_every=5, aug=["noise:0.3"], **extra)
    return [
        tiny_config(seed=0, **common),
        tiny_config(seed=1, lr=5e-3, weight_decay=0.05, **common),  # its own rate and decay
        tiny_config(seed=2, subset=128, base_field="gaussian", flow="si-linear", **common),  # own data, base, path
    ]


def _close(a, b, tol=1e-4):
    """Per tensor, ||b - a|| / ||a|| < tol: float32 rounding (batched vs single matrix products) that
    Adam's normalisation amplifies on near-zero gradients; measured ~1e-6 after 24 steps."""
    for key in a:
        error = float((b[key] - a[key]).norm() / a[key].norm().clamp_min(1e-12))
        assert error < tol, f"{key}: relative error {error:.2e}"


def _check_against_separate_runs(tmp_path, configs, tol=1e-4, **group_options):
    for k, cfg in enumerate(configs):
        Trainer(cfg, tmp_path / f"alone{k}", progress=False).fit()
    group = StackedGroup(configs, [tmp_path / f"group{k}" for k in range(len(configs))], **group_options)
    results = group.fit()
    for k in range(len(configs)):
        alone = load_checkpoint(tmp_path / f"alone{k}/checkpoints/last.pt")
        stacked = load_checkpoint(tmp_path / f"group{k}/checkpoints/last.pt")
        _close(alone["model"], stacked["model"], tol)
        _close(alone["ema"]["model"], stacked["ema"]["model"], tol)
        assert torch.equal(alone["rng"]["generator"], stacked["rng"]["generator"])  # the same draws
        assert stacked["best_val"] == pytest.approx(alone["best_val"], rel=1e-4)
        assert results[k].steps == configs[k].steps and stacked["finished"]
    return group


@pytest.mark.parametrize("vmap", [True, False])  # batched networks, or one after another (Mamba's scan)
def test_group_matches_separate_runs(tmp_path, tiny_config, vmap):
    group = _check_against_separate_runs(tmp_path, _members(tiny_config), vmap=vmap)
    assert group.vmapped == vmap
    # members are ordinary runs: load for sampling, and their optimiser state resumes a longer run
    run = load_run(tmp_path / "group1")
    assert run.model(torch.zeros(2, 16), torch.zeros(2)).shape == (2, 16)
    assert load_checkpoint(tmp_path / "group1/checkpoints/last.pt")["optimizer"]["state"]


def test_members_stop_early_on_their_own(tmp_path, tiny_config):
    # Member 1's validation loss rises from its second validation: with patience 1 it stops at
    # step 16 with its checkpoints written; member 0 (no patience) trains on to step 32.
    configs = [tiny_config(steps=32, batch_size=64, val_every=8), tiny_config(seed=1, steps=32, batch_size=64, val_every=8, patience=1)]
    group = StackedGroup(configs, [tmp_path / "a", tmp_path / "b"])
    rising = iter([1.0, 2.0, 3.0, 4.0])
    group.members[1].validation_loss = lambda: next(rising)
    results = group.fit()
    assert results[1].stopped_early and results[1].steps == 16 and results[1].best_val_loss == 1.0
    assert load_checkpoint(tmp_path / "b/checkpoints/last.pt")["step"] == 16
    assert load_checkpoint(tmp_path / "b/checkpoints/best.pt")["step"] == 8
    assert not results[0].stopped_early and results[0].steps == 32


def test_members_must_share_the_network(tmp_path, tiny_config):
    with pytest.raises(ConfigError, match="must share arch"):
        StackedGroup([tiny_config(), tiny_config(arch="mlp-small")], [tmp_path / "a", tmp_path / "b"])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("arch", ["mlp-tiny", "mamba-tiny"])
def test_captured_group_matches_separate_runs_on_gpu(tmp_path, tiny_config, arch):
    model = {"chunk_size": 4} if arch.startswith("mamba") else {}
    configs = [replace(c, device="cuda", arch=arch, model=model) for c in _members(tiny_config)]
    group = _check_against_separate_runs(tmp_path, configs, tol=1e-3)  # cuBLAS picks other kernels for bmm
    assert group.graph is not None


def test_interrupted_group_resumes_to_the_uninterrupted_weights(tmp_path, tiny_config):
    configs = [tiny_config(seed=s, steps=10, batch_size=48, val_every=5, aug=["noise:0.3"]) for s in (0, 1)]
    StackedGroup(configs, [tmp_path / f"full{k}" for k in range(2)]).fit()

    class StopAfterFirstValidation:
        def on_validation(self, trainer, step, val_loss):
            if step == 5:
                trainer._stop_signal = signal.SIGTERM  # what the signal handler sets

    cut = StackedGroup(configs, [tmp_path / f"cut{k}" for k in range(2)])
    cut.members[0].callbacks.append(StopAfterFirstValidation())
    with pytest.raises(TrainingInterrupted, match="interrupted"):
        cut.fit()
    assert [load_checkpoint(tmp_path / f"cut{k}/checkpoints/last.pt")["step"] for k in range(2)] == [6, 6]
    StackedGroup(configs, [tmp_path / f"cut{k}" for k in range(2)]).fit(resume=True)
    for k in range(2):
        full = load_checkpoint(tmp_path / f"full{k}/checkpoints/last.pt")
        resumed = load_checkpoint(tmp_path / f"cut{k}/checkpoints/last.pt")
        _close(full["model"], resumed["model"], tol=1e-6)
        _close(full["ema"]["model"], resumed["ema"]["model"], tol=1e-6)
        assert resumed["step"] == 10 and resumed["best_val"] == pytest.approx(full["best_val"], rel=1e-6)
