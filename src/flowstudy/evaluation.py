"""Evaluation of samples: the model's metrics beside its baselines, against held-out data.

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

import numpy as np
import torch

from flowstudy.data import EmbeddingSet, Standardizer, check_same_dim
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


def evaluate_samples(
    samples: np.ndarray,
    train: EmbeddingSet,
    reference: EmbeddingSet,
    *,
    source: str,
    standardizer: Standardizer | None = None,
    seed: int = 0,
    nfe: int | None = None,
    run=None,
    nll: NLLOptions | None = None,
) -> EvaluationResult:
    """Samples [N, D] (original space) beside the baselines, against held-out ``reference`` rows.

    ``train``: the training rows, for the baselines and (without ``standardizer``: fitted to them)
    the standardised space every metric is computed in; a run's own standardiser otherwise.
    ``run``: the :class:`~flowstudy.run.Run` the samples came from, needed for ``nll``: its held-out
    NLL on the reference rows beside the Gaussian fits', which decides the table's "beats the
    Gaussian fit" verdict. ``source`` names the samples in the result; ``nfe``: per sample.
    """
    from flowstudy.metrics import evaluate_with_baselines, norm_ratio

    samples = np.asarray(samples)
    check_same_dim({f"{source} (samples)": samples.shape[1], train.source: train.dim, reference.source: reference.dim})
    if nll is not None and run is None:
        raise ConfigError(f"{source}: the held-out NLL (nll) needs a run, not samples: samples have no density")
    if standardizer is None:
        standardizer = Standardizer.fit(torch.from_numpy(train.embeddings))
    table = evaluate_with_baselines(
        _std(standardizer, samples), _std(standardizer, train.embeddings), _std(standardizer, reference.embeddings), seed=seed
    )
    likelihood = None
    if nll is not None:
        likelihood = heldout_nll(
            run, reference.embeddings, train.embeddings, estimator=nll.estimator, probes=nll.probes,
            solver=nll.solver, steps=nll.steps, rows=nll.rows, seed=seed, graph=nll.graph,
        )
        table.nll = likelihood.summary()
        table.flags = table.compute_flags()
    ratio = norm_ratio(samples, reference.embeddings)
    return EvaluationResult(table, source, train.source, reference.source, ratio, nfe, likelihood)


def _std(standardizer: Standardizer, x: np.ndarray) -> torch.Tensor:
    return standardizer.transform(torch.from_numpy(np.asarray(x)).double()).float()


__all__ = ["EvaluationResult", "NLLOptions", "default_reference_spec", "default_test_spec", "evaluate_samples", "nll_lines"]
