"""The captured training step computes what the trainer's eager step computes.

On the CPU the captured step's device-side arithmetic (position counter, learning-rate table,
EMA decay from a device counter, foreach clipping) runs without a graph and is compared with
``Trainer.train_step``; on a GPU the graph itself is replayed and compared with eager steps.
"""

from __future__ import annotations

import json

import pytest
import torch

from flowstudy.train import Trainer, load_checkpoint
from flowstudy.train.graph import CapturedStep, host_work, make_train_step, split_pairing, uncapturable_reason


def _setup(cfg, path):
    trainer = Trainer(cfg, path, progress=False)
    trainer.setup(None)
    return trainer


def _assert_same_state(a: Trainer, b: Trainer, rtol=1e-5, atol=1e-6):
    for (name, p), q in zip(a.model.named_parameters(), b.model.parameters()):
        torch.testing.assert_close(p, q, rtol=rtol, atol=atol, msg=name)
    for p, q in zip(a.ema.model.parameters(), b.ema.model.parameters()):
        torch.testing.assert_close(p, q, rtol=rtol, atol=atol)
    assert torch.equal(a.generator.get_state(), b.generator.get_state())
    assert a.batcher.pos == b.batcher.pos and torch.equal(a.batcher.perm, b.batcher.perm)
    assert a.scheduler.get_last_lr() == b.scheduler.get_last_lr()
    assert a.ema.num_updates == b.ema.num_updates


@pytest.mark.parametrize(
    "overrides",
    [
        dict(aug=["noise:0.3"]),
        dict(flow="si-linear", aug=["dropout:0.1"], base_field="gaussian", weight_decay=0.01),
        # exact OT: draws and cost, the host's assignment, then the paired step (two graphs on CUDA)
        dict(flow="otcfm", aug=["noise:0.3"], residual_rank=4, base_field="gaussian"),
    ],
)
def test_device_side_step_matches_eager_step_on_cpu(tmp_path, tiny_config, overrides):
    # 20 steps at batch 96 over 256 rows: several epochs (new permutations), warm-up and cosine.
    cfg = tiny_config(steps=20, batch_size=96, **overrides)
    eager, fast = _setup(cfg, tmp_path / "a"), _setup(cfg, tmp_path / "b")
    initial = [p.detach().clone() for p in eager.model.parameters()]
    step = CapturedStep(fast, capture=False)
    assert (step.pairing is not None) == (cfg.flow == "otcfm")
    eager_losses, fast_losses = [], []
    for _ in range(20):
        eager_losses.append(float(eager.train_step()[0].detach()))
        fast_losses.append(float(step()[0]))
    torch.testing.assert_close(torch.tensor(fast_losses), torch.tensor(eager_losses), rtol=1e-5, atol=1e-6)
    _assert_same_state(eager, fast)
    # it trained: the comparison is not between two idle runs
    moved = sum(float((p.detach() - q).abs().sum()) for p, q in zip(eager.model.parameters(), initial))
    assert moved > 1.0


def test_cpu_trains_eagerly_and_host_couplings_are_named(tmp_path, tiny_config):
    trainer = _setup(tiny_config(flow="otcfm"), tmp_path / "run")
    assert make_train_step(trainer) == trainer.train_step
    assert "CUDA" in uncapturable_reason(trainer)


def test_exact_ot_splits_around_the_host_and_other_host_work_does_not():
    from flowstudy.data import parse_augmentations
    from flowstudy.flows import create_flow
    from flowstudy.flows.couplings import ExactOT

    assert isinstance(split_pairing(create_flow("otcfm"), []), ExactOT)
    assert split_pairing(create_flow("otcfm"), parse_augmentations(["mixup:0.2"])) is None  # mixup still needs the host
    assert split_pairing(create_flow("otcfm-sinkhorn"), []) is None
    assert split_pairing(create_flow("icfm"), []) is None


@pytest.mark.parametrize(
    "flow, aug, reason",
    [("icfm", [], None), ("si-linear", ["noise:0.3"], None), ("otcfm", [], "exact OT"),
     ("otcfm-sinkhorn", [], "Sinkhorn"), ("icfm", ["mixup:0.2"], "mixup")],
)
def test_host_work_comes_from_the_coupling_and_the_augmentations(flow, aug, reason):
    from flowstudy.data import parse_augmentations
    from flowstudy.flows import create_flow

    said = host_work(create_flow(flow), parse_augmentations(aug))
    assert said is None if reason is None else reason in said


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("arch", ["mlp-tiny", "unet-tiny", "dit-tiny", "mamba-tiny"])
def test_captured_steps_match_eager_steps_on_gpu(tmp_path, tiny_config, arch):
    extra = {"base_field": "gaussian"} if arch.startswith("mamba") else {}
    model = {"chunk_size": 4} if arch.startswith(("dit", "mamba")) else {}  # 16-D data: 4 tokens of 4
    cfg = tiny_config(arch=arch, model=model, device="cuda", steps=40, val_every=20, aug=["noise:0.3"], **extra)
    eager = Trainer(cfg.__class__(**{**cfg.to_dict(), "graph": False}), tmp_path / "eager", progress=False)
    eager.fit()
    graph = Trainer(cfg, tmp_path / "graph", progress=False)
    graph.fit()
    assert isinstance(graph.step_fn, CapturedStep) and graph.step_fn.graph is not None
    a, b = (load_checkpoint(tmp_path / name / "checkpoints/last.pt") for name in ("eager", "graph"))
    for key in a["model"]:
        torch.testing.assert_close(b["model"][key], a["model"][key], rtol=1e-4, atol=1e-5, msg=key)
        torch.testing.assert_close(b["ema"]["model"][key], a["ema"]["model"][key], rtol=1e-4, atol=1e-5, msg=key)
    assert torch.equal(a["rng"]["generator"], b["rng"]["generator"])  # same random draws consumed
    assert a["best_val"] == pytest.approx(b["best_val"], rel=1e-4)


def _eager_and_captured(tmp_path, cfg) -> tuple[dict, dict, Trainer]:
    from dataclasses import replace

    Trainer(replace(cfg, graph=False), tmp_path / "eager", progress=False).fit()
    graph = Trainer(cfg, tmp_path / "graph", progress=False)
    graph.fit()
    a, b = (load_checkpoint(tmp_path / name / "checkpoints/last.pt") for name in ("eager", "graph"))
    for key in a["model"]:
        torch.testing.assert_close(b["model"][key], a["model"][key], rtol=1e-4, atol=1e-5, msg=key)
    assert torch.equal(a["rng"]["generator"], b["rng"]["generator"])
    return a, b, graph


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_exact_ot_step_is_captured_in_two_graphs_on_gpu(tmp_path, tiny_config):
    cfg = tiny_config(device="cuda", flow="otcfm", steps=30, val_every=15, aug=["noise:0.3"], residual_rank=4, base_field="gaussian")
    _, _, graph = _eager_and_captured(tmp_path, cfg)
    assert graph.step_fn.pair_graph is not None and graph.step_fn.graph is not None


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_run_whose_epoch_is_one_batch_is_captured_on_gpu(tmp_path, tiny_config):
    """A subset no larger than a batch: every step starts an epoch, and the capture's warm-up steps
    must read within it (they ran past it before: a device-side index assert)."""
    cfg = tiny_config(device="cuda", steps=12, val_every=6, subset=40, batch_size=64)
    _, _, graph = _eager_and_captured(tmp_path, cfg)
    assert graph.step_fn.graph is not None and graph.batcher.batch_size == 40


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_captured_run_resumes_exactly_on_gpu(tmp_path, tiny_config):
    cfg = tiny_config(device="cuda", steps=60, val_every=20, aug=["noise:0.3"])
    Trainer(cfg, tmp_path / "full", progress=False).fit()

    class Stop:
        def on_validation(self, trainer, step, val_loss):
            if step == 20:
                trainer.stop.request(15)

    with pytest.raises(Exception, match="interrupted"):
        Trainer(cfg, tmp_path / "cut", callbacks=[Stop()], progress=False).fit()
    Trainer(cfg, tmp_path / "cut", progress=False).fit(resume=True)
    a, b = (load_checkpoint(tmp_path / name / "checkpoints/last.pt") for name in ("full", "cut"))
    for key in a["model"]:
        torch.testing.assert_close(b["model"][key], a["model"][key], rtol=1e-5, atol=1e-6, msg=key)


def test_cli_no_graph_is_saved_with_the_run(tmp_path, tiny_data):
    from flowstudy.cli import main

    run = tmp_path / "run"
    args = ["train", "--data", f"{tiny_data}:train", "--arch", "mlp-tiny", "--steps", "4", "--batch-size", "32", "--device", "cpu", "--quiet"]
    assert main([*args, "--out", str(run), "--no-graph"]) == 0
    assert json.loads((run / "config.json").read_text())["graph"] is False
    assert main([*args, "--out", str(tmp_path / "default")]) == 0
    assert json.loads((tmp_path / "default" / "config.json").read_text())["graph"] is True
    assert main([*args, "--out", str(tmp_path / "tf32"), "--precision", "tf32"]) == 0
    assert json.loads((tmp_path / "tf32" / "config.json").read_text())["precision"] == "tf32"
    assert main([*args, "--out", str(tmp_path / "bad"), "--compile", "fast"]) != 0  # named in a ConfigError
