"""Training data for rectified flow: (noise, endpoint) pairs drawn from a teacher run.

The pairs are generated once, in the teacher's standardised space, and stored in the new
run's directory (``reflow_pairs.pt``), so a resumed run trains on exactly the same pairs.
k-rectified flow: use a reflow run as the next run's teacher.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from flowstudy.data import Standardizer
from flowstudy.errors import CheckpointError
from flowstudy.io import atomic_torch_save
from flowstudy.train.config import TrainConfig

VAL_FRACTION = 0.1


@dataclass
class ReflowPairs:
    standardizer: Standardizer
    x0: torch.Tensor  # [N, D] noise
    x1: torch.Tensor  # [N, D] teacher's ODE image of x0 (standardised space)
    val_x0: torch.Tensor
    val_x1: torch.Tensor


def load_reflow_pairs(config: TrainConfig, run_dir: Path, device: torch.device) -> ReflowPairs:
    """Pairs from ``run_dir/reflow_pairs.pt``, generating them with the teacher when absent."""
    path = Path(run_dir) / "reflow_pairs.pt"
    if not path.exists():
        atomic_torch_save(_generate(config, device), path)
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as err:
        raise CheckpointError(f"{path}: cannot read reflow pairs: {err}") from err
    n_val = max(1, int(VAL_FRACTION * state["x0"].shape[0]))
    x0, x1 = state["x0"], state["x1"]
    return ReflowPairs(Standardizer.from_state_dict(state["standardizer"]), x0[n_val:], x1[n_val:], x0[:n_val], x1[:n_val])


def _generate(config: TrainConfig, device: torch.device) -> dict:
    from flowstudy.flows import generate_reflow_pairs
    from flowstudy.run import load_run  # here: flowstudy.run imports sampling, which imports this package

    teacher = load_run(config.teacher, device=device)
    generator = torch.Generator(device=device).manual_seed(config.seed + 7_919)
    x0, x1 = generate_reflow_pairs(
        teacher.velocity,
        config.reflow_pairs,
        teacher.standardizer.dim,
        method=config.reflow_solver,
        steps=config.reflow_steps,
        generator=generator,
        device=device,
    )
    return {"x0": x0.cpu(), "x1": x1.cpu(), "standardizer": teacher.standardizer.state_dict(), "teacher": str(config.teacher)}
