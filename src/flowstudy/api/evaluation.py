"""Evaluation through the API: a run or samples beside the baselines, against held-out data.

Everything stays in memory: a run's samples, arrays and loaded sets go to the evaluation core
(:func:`flowstudy.evaluation.evaluate_samples`) as arrays.
"""

from __future__ import annotations

import html
import os
from pathlib import Path
from typing import Any

from flowstudy.datalike import DataLike, load_dataset
from flowstudy.defaults import SAMPLE_SOLVER, SAMPLE_STEPS
from flowstudy.errors import ConfigError
from flowstudy.data.resolve import heldout_test_of, load_config_splits
from flowstudy.evaluation import EvaluationResult, NLLOptions, default_reference_spec, evaluate_samples
from flowstudy.run import Run, load_run

__all__ = ["Evaluation", "NLLOptions", "evaluate"]


class Evaluation:
    """A model's metrics beside its baselines (Gaussian fit, noise, training copies, held-out data).

    Wraps :class:`flowstudy.evaluation.EvaluationResult`; its fields (``table``, ``source``,
    ``train``, ``reference``, ``original_norm_ratio``, ``nfe``, ``nll`` ...) read through. Metrics
    are computed in the training split's standardised space; see docs/evaluation.md for how to
    read them. ``print(evaluation)`` shows the table and its flags.
    """

    def __init__(self, result: EvaluationResult):
        self.result = result

    def __getattr__(self, name: str) -> Any:
        if name == "result":  # not yet set (unpickling)
            raise AttributeError(name)
        return getattr(self.result, name)

    @property
    def flags(self) -> list[str]:
        """Warnings about the model row (e.g. not beating the Gaussian fit)."""
        return list(self.result.table.flags)

    def columns(self) -> list[tuple[str, bool]]:
        """The metrics the table shows, in reading order, each with whether it ranks models (it
        passes the sanity check on this data: real < Gaussian fit < noise)."""
        from flowstudy.metrics.table import BADNESS

        table = self.result.table
        metrics = [m for m in BADNESS if any(m in r for r in table.rows.values())]
        ranked = set(table.ranked_metrics()) if table.sanity else set(metrics)
        return [(m, m in ranked) for m in metrics]

    def summary_lines(self) -> list[str]:
        """What a reader needs under the table: norm ratio, NLL beside the Gaussian fits, sanity."""
        return self.result.summary_lines()

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict (``flowstudy evaluate --json``)."""
        return self.result.to_dict()

    def to_frame(self):
        """A pandas DataFrame: one row per sampler (model first, then the baselines), one column per metric."""
        try:
            import pandas as pd
        except ImportError as err:
            raise ImportError("Evaluation.to_frame needs pandas: pip install pandas (or use .to_dict())") from err
        return pd.DataFrame(self.result.table.to_rows()).set_index("row")

    def _repr_html_(self) -> str:
        # the same table in a notebook: one row per sampler, the flags and the norm ratio below
        r, rows = self.result, self.result.table.to_rows()
        metrics = [m for m in rows[0] if m != "row" and not m.endswith("_std")]
        head = "".join(f"<th>{m}</th>" for m in ["row", *metrics])
        body = "".join(
            "<tr>" + f"<th>{row['row']}</th>" + "".join(f"<td>{row[m]:.4g}</td>" if m in row else "<td>-</td>" for m in metrics) + "</tr>"
            for row in rows
        )
        notes = "".join(f"<li>FLAG: {html.escape(f)}</li>" for f in self.flags)
        notes += f"<li>mean sample norm / mean held-out norm (original space): {r.original_norm_ratio:.4f}</li>"
        title = html.escape(f"Evaluation of {r.source} vs {r.reference} (standardised with {r.train})")
        return f"<p>{title}</p><table><tr>{head}</tr>{body}</table><ul>{notes}</ul>"

    def __repr__(self) -> str:
        r = self.result
        return (
            f"Evaluation of {r.source} vs {r.reference} (standardised with {r.train})\n"
            f"{r.table.format()}\n"
            f"mean sample norm / mean held-out norm (original space): {r.original_norm_ratio:.4f}"
        )


def evaluate(
    target: Run | DataLike,
    *,
    reference: DataLike | None = None,
    train: DataLike | None = None,
    n: int = 1000,
    solver: str = SAMPLE_SOLVER,
    steps: int = SAMPLE_STEPS,
    seed: int = 0,
    device: str = "auto",
    checkpoint: str = "best",
    nll: bool | NLLOptions = False,
) -> Evaluation:
    """Evaluate a run (drawing ``n`` samples from it) or samples [N, D] in the original space.

    ``target``: a :class:`Run`, a run directory, or samples (array, tensor, EmbeddingSet, spec or
    ``.npy`` path). ``reference``: real held-out rows (default: the test split beside the run's data,
    else its validation split, else the rows a run trained on one file held out: :func:`flowstudy.split`); ``train``: the training rows, which fix the standardised space
    (default: the run's data; required for samples). Every metric is computed beside the same
    metrics of the baselines, on the same held-out rows. ``nll``: True (or :class:`NLLOptions`)
    adds a run's held-out NLL beside the Gaussian fits'. A run directory is loaded from
    ``checkpoint`` on ``device``.
    """
    run = _run_of(target, checkpoint, device)
    options = NLLOptions() if nll is True else (nll or None)
    if run is not None:
        drawn = run.draw(n, solver=solver, steps=steps, seed=seed)
        samples, nfe, source, standardizer = drawn.x, drawn.nfe, str(run.path or "run"), run.standardizer
        default_reference = default_reference_spec(run.config["data"], run.config.get("val"))
        held = heldout_test_of(run.config) if reference is None and default_reference is None and train is None else None
        if held is not None:  # trained on one file: its held-out rows, beside the rows it trained on
            train, reference = load_config_splits({**run.config, "subset": None})[0], held[1]
        train = train if train is not None else run.config["data"]
    else:
        given = load_dataset(target)
        source = str(target) if isinstance(target, (str, os.PathLike)) else given.source
        samples, nfe, standardizer = given.embeddings, None, None
        if options is not None:
            raise ConfigError(f"{source}: the held-out NLL (nll) needs a run, not samples: samples have no density")
        if train is None:
            raise ConfigError(f"{source}: evaluating samples needs the training rows (train), which fix the standardised space")
        default_reference = default_reference_spec(str(train)) if isinstance(train, (str, os.PathLike)) else None
    reference = reference if reference is not None else default_reference
    if reference is None:
        raise ConfigError("no held-out reference found beside the training data: give the reference rows (reference)")
    result = evaluate_samples(
        samples, load_dataset(train), load_dataset(reference), source=source, standardizer=standardizer, seed=seed, nfe=nfe,
        run=run, nll=options,
    )
    return Evaluation(result)


def _run_of(target: Run | DataLike, checkpoint: str, device: str) -> Run | None:
    """The run ``target`` is or names (a run directory), else None (samples)."""
    if isinstance(target, Run):
        return target
    if isinstance(target, (str, os.PathLike)) and Path(target).is_dir():
        return load_run(target, checkpoint, device=device)
    return None
