"""TrainConfig.compile: the step's velocity field through torch.compile."""

from __future__ import annotations

import shutil

import pytest
import torch

from flowstudy.errors import ConfigError
from flowstudy.train import Trainer
from flowstudy.checkpoint import load_checkpoint

needs_compiler = pytest.mark.skipif(shutil.which("g++") is None, reason="torch.compile on the CPU needs a C++ compiler")


def test_compile_mode_is_validated(tiny_config):
    with pytest.raises(ConfigError, match=r"compile must be one of default, max-autotune-no-cudagraphs \(or unset\); got 'fast'"):
        tiny_config(compile="fast")


@needs_compiler
@pytest.mark.parametrize("residual_rank", [None, 8])  # the plain network; a subspace residual stepping in eigen-coordinates
def test_compiled_step_trains_like_the_eager_one(tmp_path, tiny_config, residual_rank):
    subspace = {"residual_rank": residual_rank, "base_field": "gaussian"} if residual_rank else {}
    runs = {}
    for mode in (None, "default"):
        trainer = Trainer(tiny_config(steps=10, val_every=5, compile=mode, **subspace), tmp_path / str(mode), progress=False)
        trainer.fit()
        runs[mode] = trainer
    assert not isinstance(runs[None].space.field, torch._dynamo.eval_frame.OptimizedModule)
    assert isinstance(runs["default"].space.field, torch._dynamo.eval_frame.OptimizedModule)  # the step really ran compiled
    a, b = (load_checkpoint(tmp_path / m / "checkpoints/last.pt") for m in ("None", "default"))
    # Same draws, same maths; fused kernels round differently, and AdamW's normalised steps carry a
    # rounding difference in a near-zero gradient to up to lr = 2e-3 per step (measured: 6e-5).
    for key in a["model"]:
        torch.testing.assert_close(b["model"][key], a["model"][key], rtol=0, atol=5e-4)
    assert b["step"] == a["step"] == 10
    assert runs["default"].last_val == pytest.approx(runs[None].last_val, rel=1e-4)


@needs_compiler
def test_compiled_group_trains_like_the_plain_group_and_mamba_falls_back(tmp_path, tiny_config, capsys):
    """A stacked group compiles its K vmapped networks; vmapped Mamba scans cannot be traced, so
    that group says so and runs them uncompiled."""
    from flowstudy.train.stacked import StackedGroup
    from flowstudy.train.stacked_network import CompiledOrPlain

    def fit(name, **extra):
        configs = [tiny_config(steps=6, val_every=3, seed=s, **extra) for s in (0, 1)]
        group = StackedGroup(configs, [tmp_path / f"{name}{k}" for k in range(2)])
        group.fit()
        return group, [load_checkpoint(tmp_path / f"{name}{k}/checkpoints/last.pt")["model"] for k in range(2)]

    plain, plain_weights = fit("plain")
    compiled, compiled_weights = fit("compiled", compile="default")
    assert isinstance(compiled.network, CompiledOrPlain) and compiled.vmapped
    assert compiled.network.compiled is not None and compiled.network.traced  # the steps ran the compiled networks
    for a, b in zip(plain_weights, compiled_weights):
        for key in a:
            torch.testing.assert_close(b[key], a[key], rtol=0, atol=5e-4)
    mamba = dict(arch="mamba-tiny", model={"chunk_size": 4, "backend": "torch"})
    _, eager_weights = fit("mamba", **mamba)
    fallback, fallback_weights = fit("mamba-compiled", compile="default", **mamba)
    assert fallback.network.compiled is None and not fallback.network.traced and "torch.compile failed" in capsys.readouterr().err
    for a, b in zip(eager_weights, fallback_weights):  # the same eager networks
        assert all(torch.equal(a[key], b[key]) for key in a)
