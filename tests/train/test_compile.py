"""TrainConfig.compile: the step's velocity field through torch.compile."""

from __future__ import annotations

import shutil

import pytest
import torch

from flowstudy.errors import ConfigError
from flowstudy.train import Trainer
from flowstudy.train.checkpoint import load_checkpoint

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
    assert not isinstance(runs[None].step_field, torch._dynamo.eval_frame.OptimizedModule)
    assert isinstance(runs["default"].step_field, torch._dynamo.eval_frame.OptimizedModule)  # the step really ran compiled
    a, b = (load_checkpoint(tmp_path / m / "checkpoints/last.pt") for m in ("None", "default"))
    # Same draws, same maths; fused kernels round differently, and AdamW's normalised steps carry a
    # rounding difference in a near-zero gradient to up to lr = 2e-3 per step (measured: 6e-5).
    for key in a["model"]:
        torch.testing.assert_close(b["model"][key], a["model"][key], rtol=0, atol=5e-4)
    assert b["step"] == a["step"] == 10
    assert runs["default"].last_val == pytest.approx(runs[None].last_val, rel=1e-4)
