"""``flowstudy train``, ``sample``, ``reconstruct`` and ``evaluate``: one call of :mod:`flowstudy.api` each."""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from flowstudy import api
from flowstudy.cli import train_options
from flowstudy.console import labelled, make_console, styled
from flowstudy.defaults import SAMPLE_SOLVER, SAMPLE_STEPS
from flowstudy.errors import ConfigError
from flowstudy.io import atomic_save_npy, atomic_write_text

console = make_console()


def register(app: typer.Typer) -> None:
    """Add ``train``, ``sample``, ``reconstruct`` and ``evaluate`` to ``app``."""
    app.command("train")(train_command())
    app.command("sample")(sample)
    app.command("reconstruct")(reconstruct)
    app.command("evaluate")(evaluate)


def train_command():
    """The ``train`` command: its options are the training options (:mod:`flowstudy.cli.train_options`)
    plus where the run goes and how to start it."""

    def train(
        out: str = typer.Option(..., "--out", help="Run directory to create (or continue with --resume)."),
        config: Optional[str] = typer.Option(None, "--config", help="TOML/YAML/JSON file with any of these options."),
        resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from checkpoints/last.pt."),
        quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
        **given,
    ) -> None:
        """Train a flow-matching prior; writes config, metrics.jsonl and checkpoints/{best,last}.pt."""
        options = train_options.values(given)
        data, arch, val = options.pop("data"), options.pop("arch"), options.pop("val")
        run = api.fit(data, out=out, arch=arch, val=val, config=config, resume=resume, progress=not quiet, **options)
        result, cfg = run.result, run.config
        early = " (stopped early)" if result.stopped_early else ""
        console.print(
            f"trained {cfg['arch']} / {cfg['flow']}: {result.steps}/{result.total_steps} steps{early} in {result.seconds:.0f} s; "
            f"best val loss {result.best_val_loss:.4f} -> {out}/checkpoints/best.pt"
        )

    fixed = [p for p in inspect.signature(train).parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    train.__signature__ = inspect.Signature(fixed + train_options.parameters())
    return train


def sample(
    run_dir: str = typer.Argument(..., help="A run directory."),
    out: str = typer.Option(..., "--out", help="Output .npy (float32 [N, D], original space) or .csv (one row per sample)."),
    n: int = typer.Option(1000, "--n", help="Number of samples."),
    solver: str = typer.Option(SAMPLE_SOLVER, help="euler, midpoint, heun, rk4, dopri5."),
    steps: int = typer.Option(SAMPLE_STEPS, help="Solver steps (midpoint: 2 network evaluations each)."),
    seed: int = typer.Option(0),
    device: str = typer.Option("auto"),
    checkpoint: str = typer.Option("best", help="best or last."),
    nearest_text: bool = typer.Option(False, "--nearest-text", help="Also write the nearest training text of each sample."),
) -> None:
    """Draw samples from a trained run, in the original embedding space."""
    if n < 1:
        raise ConfigError(f"--n must be >= 1; got {n}")
    if Path(out).suffix.lower() not in (".npy", ".csv"):
        raise ConfigError(f"--out must name a .npy or .csv file; got {out}")
    run = api.load_run(run_dir, checkpoint, device=device)
    drawn = api.sample(run, n, solver=solver, steps=steps, seed=seed)
    if Path(out).suffix.lower() == ".csv":  # one row per sample, D comma-separated values, float32 precision
        import io

        import numpy as np

        text = io.StringIO()
        np.savetxt(text, drawn.x, delimiter=",", fmt="%.9g")
        atomic_write_text(Path(out), text.getvalue())
    else:
        atomic_save_npy(Path(out), drawn.x)
    console.print(f"wrote {n} samples [{n}, {drawn.x.shape[1]}] to {out} ({solver}, {steps} steps, {drawn.nfe} NFE)")
    if nearest_text:
        path = Path(out).with_suffix(".texts.jsonl")
        atomic_write_text(path, "".join(json.dumps(match.to_dict()) + "\n" for match in run.nearest_texts(drawn)))
        console.print(f"wrote nearest training texts to {path} (distances in standardised space)")


def reconstruct(
    run_dir: str = typer.Argument(..., help="A run directory."),
    data: str = typer.Option(..., "--data", help="Embeddings to invert and regenerate."),
    solver: str = typer.Option("rk4"),
    steps: int = typer.Option(50),
    device: str = typer.Option("auto"),
    checkpoint: str = typer.Option("best"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Invert data to noise and integrate back; MSE and cosine in the original space."""
    report = api.reconstruct(run_dir, data, solver=solver, steps=steps, checkpoint=checkpoint, device=device)
    if as_json:
        print(json.dumps(report.to_dict(), indent=2))
        return
    table = Table(title=f"Reconstruction of {report.source} ({solver}, {steps} steps each way)", show_header=False)
    for key, value in report.to_dict().items():
        table.add_row(key, f"{value:.6g}" if isinstance(value, float) else str(value))
    console.print(table)


def evaluate(
    target: str = typer.Argument(..., help="A run directory, or a samples .npy (original space)."),
    reference: Optional[str] = typer.Option(None, help="Held-out real data spec (default: the data's test split, else its val split)."),
    train: Optional[str] = typer.Option(None, help="Training data spec (default: the run's data)."),
    n: int = typer.Option(1000, "--n", help="Samples to draw from a run."),
    solver: str = typer.Option(SAMPLE_SOLVER, help="Sampling solver: euler, midpoint, heun, rk4, dopri5."),
    steps: int = typer.Option(SAMPLE_STEPS, help="Sampling solver steps."),
    seed: int = typer.Option(0),
    device: str = typer.Option("auto"),
    as_json: bool = typer.Option(False, "--json"),
    nll: bool = typer.Option(False, "--nll", help="Also the held-out NLL of the run beside the Gaussian fits'."),
    nll_estimator: str = typer.Option("auto", help="exact | hutchinson | auto (exact on CUDA, hutchinson on CPU)."),
    nll_probes: int = typer.Option(4, help="Rademacher probes per row (hutchinson)."),
    nll_solver: str = typer.Option("rk4", help="ODE solver from data to noise."),
    nll_steps: int = typer.Option(20, help="Solver steps (dopri5: adaptive, tolerance 1e-5)."),
    nll_rows: Optional[int] = typer.Option(None, help="Held-out rows for the NLL (default: all)."),
    nll_graph: bool = typer.Option(False, "--nll-graph", help="Replay each NLL batch's solve as a CUDA graph (exact estimator)."),
) -> None:
    """The model beside its baselines (Gaussian fit, noise, training copies, held-out data)."""
    options = api.NLLOptions(nll_estimator, nll_probes, nll_solver, nll_steps, nll_rows, nll_graph) if nll else False
    result = api.evaluate(target, reference=reference, train=train, n=n, solver=solver, steps=steps, seed=seed, device=device, nll=options)
    if as_json:
        print(json.dumps(result.to_dict(), indent=2))
        return
    render_evaluation(result, f"{target} vs {result.reference} (standardised with {result.train})")
    for line in result.summary_lines():
        console.print(line, highlight=False)


def render_evaluation(evaluation: api.Evaluation, title: str) -> None:
    """A rich table of the model row and its baselines, the flags underneath."""
    columns = evaluation.columns()
    out = Table(title=title)
    out.add_column("row", style="bold")
    for metric, ranked in columns:
        out.add_column(metric if ranked else f"{metric} †", justify="right")
    for row in evaluation.table.to_rows():
        out.add_row(str(row["row"]), *[f"{row[m]:.4g}" if m in row else "-" for m, _ in columns])
    console.print(out)
    console.print(
        "fidelity/novelty: median NN distance over that of real held-out rows (1 = real; novelty 0 = copies); "
        f"distribution metrics on {evaluation.table.n_eval} rows per split (Fréchet distance is biased upward at small N)."
    )
    if not all(ranked for _, ranked in columns):
        console.print("†: fails the sanity check on this data (real < Gaussian fit < noise): shown, not ranked.")
    for flag in evaluation.flags:
        console.print(labelled("FLAG:", "bold yellow", flag), highlight=False)


__all__ = ["register", "render_evaluation", "train_command"]
