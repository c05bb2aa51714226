"""Choosing a run's model by validation likelihood instead of validation loss.

The flow-matching loss is a regression loss on velocities; a lower one need not mean a higher
likelihood of held-out rows (docs/results/recipes/NOTES.md: the base field and longer training
lowered the loss and contracted the samples). Two choices read the likelihood instead:

- ``select_by = "nll"``: the checkpoint kept as ``best.pt`` (and early stopping) follows the
  validation rows' NLL under the EMA field (:func:`validation_nll`) at each validation;
- ``residual_scales``: after training, the residual scale α of a subspace residual
  (v = base + α·U_k h; :mod:`flowstudy.flows.subspace`) is chosen from a grid by the same
  validation NLL and written into the checkpoints. α = 0 is the Gaussian fit, so with 0 in the
  grid the chosen model is never worse than the Gaussian fit on the validation rows.

Both use the instantaneous change of variables (:func:`flowstudy.metrics.likelihood.ode_log_prob`)
with fixed-step RK4, the field's exact structured divergence when it has one, else Hutchinson's
estimator with probes fixed by a seed, so every candidate is scored on the same draws.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from flowstudy.errors import ConfigError

SELECT_BY = ("loss", "nll")

VALIDATION_STEPS = 10
"""RK4 steps of the validation NLL (40 network evaluations): enough to rank candidates."""

VALIDATION_PROBES = 2
"""Hutchinson probes per row for fields without an exact structured divergence."""


def validation_nll(field: nn.Module, x1: Tensor, *, steps: int = VALIDATION_STEPS, seed: int = 0) -> float:
    """Mean NLL of rows x1 [N, D] under ``field`` (noise at t = 0, data at t = 1), nats per
    dimension of the field's (standardised) space; lower is better."""
    from flowstudy.metrics.likelihood import ode_log_prob

    structured = getattr(field, "divergence", None)
    estimator = "exact" if structured is not None else "hutchinson"
    log_p, _ = ode_log_prob(
        field, x1.float(), estimator=estimator, probes=VALIDATION_PROBES, solver="rk4", steps=steps, seed=seed,
        exact_divergence=structured,
    )
    return float(-log_p.mean()) / x1.shape[1]


def choose_scale(field: nn.Module, x1: Tensor, scales: list[float], **kwargs) -> tuple[float, dict[float, float]]:
    """The α of ``scales`` with the lowest :func:`validation_nll` of x1 under ``field`` (a
    :class:`~flowstudy.flows.subspace.SubspaceResidual`), and every α's NLL. ``field`` is left at
    the chosen α."""
    if not hasattr(field, "scale"):
        raise ConfigError("residual_scales needs a subspace residual (set residual_rank; residual_rank = D acts everywhere)")
    if not scales or min(scales) < 0:
        raise ConfigError(f"residual_scales must be a non-empty list of values >= 0; got {scales!r}")
    scores = {}
    with torch.no_grad():
        for alpha in scales:
            field.scale.fill_(float(alpha))
            scores[float(alpha)] = validation_nll(field, x1, **kwargs)
    best = min(scores, key=scores.get)
    field.scale.fill_(best)
    return best, scores


def choose_run_scale(paths, x1: Tensor, scales: list[float], *, seed: int, device: torch.device) -> float:
    """:func:`choose_scale` for the best checkpoint's EMA field of the run in ``paths`` (a
    :class:`~flowstudy.rundir.RunPaths`) on validation rows x1 [N, D]: the chosen α is written
    into best.pt and last.pt (``residual["scale"]``), every α's score into scale_selection.json."""
    from flowstudy.io import atomic_write_json
    from flowstudy.checkpoint import load_checkpoint, save_checkpoint
    from flowstudy.run import load_run

    run = load_run(paths.root, "best", device=device)
    alpha, scores = choose_scale(run.model, x1, scales, seed=seed)
    for path in (paths.best, paths.last):
        if path.exists():
            state = load_checkpoint(path)
            state["residual"] = {**state["residual"], "scale": alpha}
            save_checkpoint(path, state)
    atomic_write_json(paths.root / "scale_selection.json", {"chosen": alpha, "val_nll_per_dim": {str(a): v for a, v in scores.items()}})
    return alpha


__all__ = ["SELECT_BY", "VALIDATION_STEPS", "choose_run_scale", "choose_scale", "validation_nll"]
