"""A trained run: what training writes and sampling, metrics, guidance, studies and the API read.

    RUN_DIR/config.json             resolved TrainConfig + seed, versions
    RUN_DIR/metrics.jsonl           one JSON object per logged step / validation
    RUN_DIR/standardizer.pt         training-split statistics (also inside each checkpoint)
    RUN_DIR/checkpoints/{best,last}.pt

:func:`load_run` rebuilds a :class:`Run` from ``checkpoints/{best,last}.pt``: the resolved
configuration, the training split's standardiser, the Gaussian base field (when the run has
one), the network (EMA weights by default) and the checkpoint itself. ``run.model`` is the whole
velocity field in standardised space; ``run.draw``/``run.sample`` integrate it from noise and
hand samples back in the ORIGINAL space.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from flowstudy.checkpoint import load_checkpoint
from flowstudy.data import Standardizer, check_same_dim
from flowstudy.data import load_dataset as load_spec
from flowstudy.datalike import DataLike, load_dataset
from flowstudy.defaults import SAMPLE_SOLVER, SAMPLE_STEPS
from flowstudy.devices import resolve_device
from flowstudy.errors import CheckpointError, ConfigError, DataError
from flowstudy.flows import create_flow
from flowstudy.flows.gaussian_base import GaussianBaseField, WithBaseField
from flowstudy.flows.subspace import SubspaceNet, compose_field
from flowstudy.models import create_model
from flowstudy.sampling import NearestText, ReconstructionReport, Samples, nearest_rows, reconstruct, sample_standardized
from flowstudy.rundir import RunPaths

CHECKPOINTS = ("best", "last")
"""``best``: lowest validation loss (or NLL, by ``select_by``); falls back to ``last``, the latest state."""

__all__ = ["CHECKPOINTS", "Run", "RunPaths", "load_run"]


class Run:
    """A trained run: its velocity field, standardiser and checkpoint (and directory, when on disk).

    ``model(x, t)``: the whole velocity field in standardised space, [B, D] -> [B, D] (EMA weights,
    eval mode): the network alone, or base field + network (:attr:`base_field`, :attr:`network`).
    ``checkpoint``: the checkpoint dict it was rebuilt from (``config``, ``step``, ``residual`` ...);
    ``which``: ``best`` or ``last``; ``result``: the :class:`~flowstudy.train.TrainResult` when
    this object comes from training it (:func:`flowstudy.fit`).
    """

    def __init__(
        self,
        model: nn.Module,
        standardizer: Standardizer,
        checkpoint: dict,
        *,
        path: str | Path | None = None,
        which: str = "best",
        result: Any = None,
    ):
        self.model, self.standardizer, self.checkpoint = model, standardizer, checkpoint
        self.path = Path(path) if path is not None else None
        self.which, self.result = which, result

    # ----------------------------------------------------------------- what it is
    @property
    def config(self) -> dict[str, Any]:
        """The resolved training configuration stored in the checkpoint."""
        return self.checkpoint["config"]

    @property
    def dim(self) -> int:
        """Embedding dimension D."""
        return self.standardizer.dim

    @property
    def device(self) -> torch.device:
        """Where the velocity field's weights live."""
        return next(self.model.parameters()).device

    @property
    def base_field(self) -> GaussianBaseField | None:
        """The closed-form Gaussian base field the network is a residual of (None: no base)."""
        return self.model.base if isinstance(self.model, WithBaseField) else None

    @property
    def network(self) -> nn.Module:
        """The trained network (for a subspace residual, its :class:`~flowstudy.flows.subspace.SubspaceNet`)."""
        return self.model.net if isinstance(self.model, WithBaseField) else self.model

    @property
    def residual_rank(self) -> int | None:
        """k of a subspace residual (the network acts in the base's top-k principal directions),
        None when the network acts in the whole space."""
        return self.network.rank if isinstance(self.network, SubspaceNet) else None

    def velocity(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The velocity in standardised space. x: [B, D], t: [B] -> [B, D]."""
        return self.model(x, t)

    # ----------------------------------------------------------------- what it does
    def draw(self, n: int, *, seed: int = 0, solver: str = SAMPLE_SOLVER, steps: int = SAMPLE_STEPS, batch_size: int = 4096) -> Samples:
        """n samples: noise N(0, I) at t = 0 integrated to t = 1 with ``solver`` in ``steps`` steps.

        Deterministic given ``seed`` (and device). x: float32 [n, D], original space.
        """
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ConfigError(f"n must be >= 1 (an integer); got {n!r}")
        z, nfe = sample_standardized(self, n, solver=solver, steps=steps, seed=seed, batch_size=batch_size)
        x = self.standardizer.inverse(z.double()).float().numpy()
        return Samples(x, z, nfe, solver, steps, seed)

    def sample(self, n: int, *, seed: int = 0, solver: str = SAMPLE_SOLVER, steps: int = SAMPLE_STEPS) -> np.ndarray:
        """n samples as a float32 numpy array [n, D] in the ORIGINAL embedding space (see :meth:`draw`)."""
        return self.draw(n, seed=seed, solver=solver, steps=steps).x

    def reconstruct(self, data: DataLike, *, solver: str = "rk4", steps: int = 50) -> ReconstructionReport:
        """Invert rows [N, D] (original space) to noise (t: 1 -> 0), integrate back, report the errors."""
        rows = load_dataset(data)
        check_same_dim({f"{self.path or 'run'} (model)": self.dim, rows.source: rows.dim})
        return reconstruct(self, rows.embeddings, solver=solver, steps=steps, source=rows.source)

    def nearest_texts(self, samples: Samples | DataLike) -> list[NearestText]:
        """For each sample, the nearest row of the run's training data (standardised space) and its text."""
        train_set = load_spec(self.config["data"])
        if train_set.texts is None:
            raise DataError(f"{train_set.source} has no texts: nearest texts need a training set with texts")
        if isinstance(samples, Samples):
            z = samples.z
        else:
            z = self.standardizer.transform(torch.from_numpy(load_dataset(samples).embeddings).double())
        reference = self.standardizer.transform(torch.from_numpy(train_set.embeddings).double())
        idx, dist = nearest_rows(z, reference)
        return [NearestText(i, int(j), float(d), train_set.texts[int(j)]) for i, (j, d) in enumerate(zip(idx, dist))]

    def __repr__(self) -> str:
        cfg = self.config
        trained = f", best val loss {self.result.best_val_loss:.4f}" if self.result is not None else ""
        where = repr(str(self.path)) if self.path is not None else "in memory"
        return f"Run({where}, arch={cfg.get('arch')!r}, flow={cfg.get('flow')!r}, {self.which}{trained})"


def load_run(run_dir: str | Path, checkpoint: str = "best", *, device: str | torch.device = "auto", ema: bool = True) -> Run:
    """Rebuild a run from ``run_dir/checkpoints/{checkpoint}.pt`` on ``device`` ("auto": CUDA when there is one).

    ``checkpoint``: ``best`` (falls back to ``last`` when the run has no best yet) or ``last``;
    ``ema``: the EMA weights (what every command samples with) or, False, the raw ones.
    Raises CheckpointError naming the directory or file when it holds no usable run.
    """
    paths = RunPaths(Path(run_dir))
    if not paths.root.is_dir():
        raise CheckpointError(f"{paths.root}: no such run directory")
    if checkpoint not in CHECKPOINTS:
        raise CheckpointError(f"checkpoint must be one of {', '.join(CHECKPOINTS)}; got {checkpoint!r}")
    path = paths.best if checkpoint == "best" and paths.best.exists() else paths.last
    if not path.exists():
        raise CheckpointError(f"{paths.root}: holds no checkpoint (looked for checkpoints/best.pt and last.pt)")
    state = load_checkpoint(path)
    model = _velocity_field(state, path, ema).to(resolve_device(device)).eval()
    return Run(model, Standardizer.from_state_dict(state["standardizer"]), state, path=paths.root, which=path.stem)


def _velocity_field(state: dict, path: Path, ema: bool) -> nn.Module:
    """The network of a checkpoint with its weights, composed with its base field (if any)."""
    base = _base_field(state) if state.get("base_field") is not None else None
    model = create_model(state["arch"], **state["model_config"])
    if state.get("residual") is not None:  # the network, confined to the base's top principal subspace
        if base is None:
            raise CheckpointError(f"{path}: a subspace residual without its base field")
        model = SubspaceNet.around(model, base, **state["residual"])
    try:
        model.load_state_dict(state["ema"]["model"] if ema else state["model"])
    except RuntimeError as err:
        raise CheckpointError(f"{path}: weights do not fit architecture '{state['arch']}': {err}") from err
    return compose_field(model, base)  # base + network (or + subspace residual), or the network alone


def _base_field(state: dict) -> GaussianBaseField:
    cfg = state["config"]
    return GaussianBaseField.from_state(state["base_field"], create_flow(cfg["flow"], **cfg.get("flow_options", {})).path)
