"""A run directory and what every command needs from it.

    RUN_DIR/config.json             resolved TrainConfig + seed, versions
    RUN_DIR/metrics.jsonl           one JSON object per logged step / validation
    RUN_DIR/standardizer.pt         training-split statistics (also inside each checkpoint)
    RUN_DIR/checkpoints/{best,last}.pt
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from flowstudy.data import Standardizer
from flowstudy.errors import CheckpointError
from flowstudy.train.checkpoint import load_checkpoint


@dataclass(frozen=True)
class RunPaths:
    """The paths inside a run directory (see the module docstring)."""

    root: Path

    @property
    def config(self) -> Path:
        """``config.json``: the resolved TrainConfig, versions and total steps."""
        return self.root / "config.json"

    @property
    def metrics(self) -> Path:
        """``metrics.jsonl``: one JSON object per logged step or validation."""
        return self.root / "metrics.jsonl"

    @property
    def standardizer(self) -> Path:
        """``standardizer.pt``: the training split's statistics."""
        return self.root / "standardizer.pt"

    @property
    def checkpoints(self) -> Path:
        """The ``checkpoints`` folder."""
        return self.root / "checkpoints"

    @property
    def last(self) -> Path:
        """``checkpoints/last.pt``: the latest state, for resuming."""
        return self.checkpoints / "last.pt"

    @property
    def best(self) -> Path:
        """``checkpoints/best.pt``: the state with the lowest validation loss."""
        return self.checkpoints / "best.pt"


@dataclass
class LoadedRun:
    """A trained model (EMA weights, eval mode), its standardizer and the checkpoint dict.

    ``model(x, t)`` is the run's whole velocity field: for a run with a Gaussian base field it is
    a :class:`~flowstudy.flows.gaussian_base.WithBaseField` (base + network; the network is
    ``model.net``); with a ``residual_rank`` a
    :class:`~flowstudy.flows.subspace.SubspaceResidual`.
    """

    model: nn.Module
    standardizer: Standardizer
    checkpoint: dict

    @property
    def config(self) -> dict:
        """The resolved training configuration stored in the checkpoint."""
        return self.checkpoint["config"]

    def velocity(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The network's velocity in standardised space. x: [B, D], t: [B]."""
        return self.model(x, t)


def load_run(run_dir: str | Path, which: str = "best", device: str | torch.device = "cpu", ema: bool = True) -> LoadedRun:
    """Rebuild the model of a run from ``checkpoints/{which}.pt`` (EMA weights by default)."""
    from flowstudy.flows.subspace import SubspaceNet, compose_field
    from flowstudy.models import create_model

    paths = RunPaths(Path(run_dir))
    if not paths.root.is_dir():
        raise CheckpointError(f"{paths.root}: no such run directory")
    if which not in ("best", "last"):
        raise CheckpointError(f"checkpoint must be 'best' or 'last'; got '{which}'")
    path = paths.best if which == "best" and paths.best.exists() else paths.last
    if not path.exists():
        raise CheckpointError(f"{paths.root}: holds no checkpoint (looked for checkpoints/best.pt and last.pt)")
    state = load_checkpoint(path)
    base = _base(state) if state.get("base_field") is not None else None
    model = create_model(state["arch"], **state["model_config"])
    if state.get("residual") is not None:  # the network, confined to the base's top principal subspace
        if base is None:
            raise CheckpointError(f"{path}: a subspace residual without its base field")
        model = SubspaceNet.around(model, base, **state["residual"])
    try:
        model.load_state_dict(state["ema"]["model"] if ema else state["model"])
    except RuntimeError as err:
        raise CheckpointError(f"{path}: weights do not fit architecture '{state['arch']}': {err}") from err
    model = compose_field(model, base)  # base + network (or + subspace residual), or the network alone
    model = model.to(device).eval()
    return LoadedRun(model, Standardizer.from_state_dict(state["standardizer"]), state)


def _base(state: dict):
    from flowstudy.flows import create_flow
    from flowstudy.flows.gaussian_base import GaussianBaseField

    cfg = state["config"]
    return GaussianBaseField.from_state(state["base_field"], create_flow(cfg["flow"], **cfg.get("flow_options", {})).path)
