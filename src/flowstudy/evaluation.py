"""Glue for ``flowstudy evaluate``: samples (from a run or a file) against baselines and held-out data.

All metrics are computed in one space — standardised with the training split's statistics —
and on the same held-out set; the sample norm is also compared in the original space, where
the SONAR decoder reads it.

The held-out reference is the data's **test** split when it has one (``builtin:NAME:test``,
``DIR:test``): the validation split chose the checkpoint (early stopping) and the recipes, so
it is not held out from the model's selection. Without a test split the validation split is
the reference (:func:`default_reference_spec`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from flowstudy.defaults import SAMPLE_SOLVER, SAMPLE_STEPS
from flowstudy.data import Standardizer, check_same_dim, load_dataset
from flowstudy.data.resolve import default_test_spec, default_val_spec
from flowstudy.errors import ConfigError
from flowstudy.metrics.likelihood import DEFAULT_PROBES, DEFAULT_SOLVER, DEFAULT_STEPS, HeldoutNLL, heldout_nll


def default_reference_spec(data_spec: str, val_spec: str | None = None) -> str | None:
    """Evaluation's held-out reference: the test split beside ``data_spec``, else ``val_spec``,
    else the validation split beside the data; None when there is none (a random split)."""
    return default_test_spec(data_spec) or val_spec or default_val_spec(data_spec)


@dataclass(frozen=True)
class NLLOptions:
    """How ``evaluate --nll`` computes the held-out NLL (:func:`flowstudy.metrics.likelihood.heldout_nll`).

    estimator "auto": exact divergence on CUDA, Hutchinson on CPU (exact costs about D backward
    passes per network evaluation: minutes per 100 rows on a CPU in 1024-D).
    rows: held-out rows to use (None: all). graph: each batch's solve replayed as a CUDA graph
    (exact estimator, fixed-step solver).
    """

    estimator: str = "auto"
    probes: int = DEFAULT_PROBES
    solver: str = DEFAULT_SOLVER
    steps: int = DEFAULT_STEPS
    rows: int | None = None
    graph: bool = False


@dataclass
class EvaluationResult:
    table: object  # flowstudy.metrics.EvaluationTable
    source: str
    train: str
    reference: str
    original_norm_ratio: float  # mean ||sample|| / mean ||held-out row||, original space
    nfe: int | None
    nll: HeldoutNLL | None = None

    def to_dict(self) -> dict:
        return {
            "source": self.source,
            "train": self.train,
            "reference": self.reference,
            "original_norm_ratio": self.original_norm_ratio,
            "nfe": self.nfe,
            **self.table.to_dict(),
            "nll_details": None if self.nll is None else self.nll.to_dict(),
        }

    def summary_lines(self) -> list[str]:
        """What a reader needs under the table: NLL beside the Gaussian fits, which metrics rank."""
        lines = [f"mean sample norm / mean held-out norm (original space): {self.original_norm_ratio:.4f}"]
        if self.nll is not None:
            lines += nll_lines(self.nll)
        return lines + [f"sanity: {line}" for line in self.table.sanity_lines()]


def nll_lines(nll: HeldoutNLL) -> list[str]:
    """Held-out NLL of the model and the Gaussian fits (original space), with how it was computed."""
    m, g, dg = nll.model, nll.gaussian_full, nll.gaussian_diagonal
    se = f" ± {m.std_error:.2g} (estimator)" if nll.estimator == "hutchinson" else ""
    verdict = "beats" if nll.beats_gaussian else "does NOT beat"
    return [
        f"held-out NLL, nats/dim (original space; bits/dim in brackets), {m.n_rows} rows: model {m.nats_per_dim:.4f}{se} "
        f"[{m.bits_per_dim:.4f}], Gaussian fit (Ledoit-Wolf, shrinkage {nll.shrinkage:.3f}) {g.nats_per_dim:.4f} "
        f"[{g.bits_per_dim:.4f}], diagonal Gaussian {dg.nats_per_dim:.4f} [{dg.bits_per_dim:.4f}]",
        f"model - Gaussian fit: {nll.gap_to_gaussian:+.4f} ± {nll.gap_std_error:.2g} nats/dim (paired over rows): the model "
        f"{verdict} the Gaussian fit by NLL",
        f"NLL computed with: {nll.describe()}",
    ]


def evaluate_target(
    target: str,
    *,
    reference: str | None = None,
    train: str | None = None,
    n: int = 1000,
    solver: str = SAMPLE_SOLVER,
    steps: int = SAMPLE_STEPS,
    seed: int = 0,
    device: str = "auto",
    nll: NLLOptions | None = None,
) -> EvaluationResult:
    """Evaluate a run directory (sampling ``n`` rows) or a samples ``.npy`` file (original space).

    With ``nll``, a run's held-out NLL is computed on the reference rows beside the Gaussian
    fits' and decides the table's "beats the Gaussian fit" verdict.
    """
    from flowstudy.metrics import evaluate_with_baselines, norm_ratio

    path = Path(target)
    nfe = None
    if path.is_dir():
        from flowstudy.sampling import sample_standardized
        from flowstudy.train import load_run, resolve_device

        run = load_run(path, device=resolve_device(device))
        train = train or run.config["data"]
        reference = reference or default_reference_spec(run.config["data"], run.config.get("val"))
        standardizer = run.standardizer
        z, nfe = sample_standardized(run, n, solver=solver, steps=steps, seed=seed)
        samples = standardizer.inverse(z.double()).float().numpy()
    else:
        if nll is not None:
            raise ConfigError(f"{target}: --nll needs a run directory (a samples file has no density)")
        if train is None:
            raise ConfigError(f"{target}: evaluating a samples file needs --train SPEC (the training data, for the standardiser)")
        samples = load_dataset(str(path)).embeddings
        standardizer = None
        reference = reference or default_reference_spec(train)
    if reference is None:
        raise ConfigError("no held-out reference found: pass --reference SPEC")
    train_set, ref_set = load_dataset(train), load_dataset(reference)
    check_same_dim({f"{target} (samples)": samples.shape[1], train_set.source: train_set.dim, ref_set.source: ref_set.dim})
    if standardizer is None:
        standardizer = Standardizer.fit(torch.from_numpy(train_set.embeddings))
    table = evaluate_with_baselines(
        _std(standardizer, samples), _std(standardizer, train_set.embeddings), _std(standardizer, ref_set.embeddings), seed=seed
    )
    ratio = norm_ratio(samples, ref_set.embeddings)
    likelihood = None
    if nll is not None:
        likelihood = heldout_nll(
            run, ref_set.embeddings, train_set.embeddings, estimator=nll.estimator, probes=nll.probes,
            solver=nll.solver, steps=nll.steps, rows=nll.rows, seed=seed, graph=nll.graph,
        )
        table.nll = likelihood.summary()
        table.flags = table.compute_flags()
    return EvaluationResult(table, str(target), train_set.source, ref_set.source, ratio, nfe, likelihood)


def _std(standardizer: Standardizer, x: np.ndarray) -> torch.Tensor:
    return standardizer.transform(torch.from_numpy(np.asarray(x)).double()).float()
