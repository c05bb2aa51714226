"""The ``flowstudy`` command.

Errors meant for the user (flowstudy's own exception types) print as one line and exit 2;
``--debug`` (anywhere on the command line) shows the traceback instead.
"""

from __future__ import annotations

import json
import sys
from typing import Optional

import typer
from flowstudy.options import parse_options
from flowstudy.defaults import SAMPLE_SOLVER, SAMPLE_STEPS
from flowstudy.console import make_console
from rich.table import Table

from flowstudy.errors import FlowstudyError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Flow matching in embedding spaces.")
data_app = typer.Typer(no_args_is_help=True, help="Inspect embedding sets.")
app.add_typer(data_app, name="data")


def _register_study_commands() -> None:
    from flowstudy.study.commands import register

    register(app)


def _register_optimize_commands() -> None:
    from flowstudy.guidance.commands import register

    register(app)

console = make_console()
err_console = make_console(stderr=True)


@app.command()
def info(as_json: bool = typer.Option(False, "--json", help="Print JSON for scripts.")) -> None:
    """Versions, devices, registered architectures, flows, solvers and compute backends."""
    from flowstudy.info import collect_info

    report = collect_info()
    if as_json:
        print(json.dumps(report, indent=2))
        return
    from flowstudy.info import render_info

    render_info(report, console)


@data_app.command("inspect")
def data_inspect(
    spec: str = typer.Argument(..., help="builtin:NAME[:SPLIT], PATH or PATH:KEY"),
    texts: Optional[str] = typer.Option(None, help="Texts file (.jsonl with 'text' or .txt)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON for scripts."),
) -> None:
    """Size, norms, per-dimension spread, near-constant dimensions, duplicates, NaN check."""
    from flowstudy.api import load_dataset
    from flowstudy.data.inspect import inspect_embeddings

    report = inspect_embeddings(load_dataset(spec, texts=texts, allow_nonfinite=True))
    if as_json:
        print(json.dumps(report, indent=2))
        return
    _render_inspect(report)


def _render_inspect(r: dict) -> None:
    table = Table(title=f"Embedding set {r['source']}", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value")
    norm, std = r["norm"], r["dim_std"]
    table.add_row("rows (N)", str(r["n"]))
    table.add_row("dimension (D)", str(r["dim"]))
    table.add_row("texts", "yes" if r["has_texts"] else "no")
    table.add_row("non-finite rows", _list_or_none(r["nonfinite_rows"]))
    table.add_row("row L2 norm", f"mean {norm['mean']:.4g} ± {norm['std']:.2g} (min {norm['min']:.4g}, max {norm['max']:.4g})")
    table.add_row(
        "per-dim std",
        f"median {std['median']:.3g}; 1–99 %: {std['p01']:.3g}–{std['p99']:.3g}; min {std['min']:.3g}, max {std['max']:.3g}",
    )
    table.add_row("mean pairwise cosine", f"{r['mean_pairwise_cosine']:.3f}")
    near = r["near_constant_dims"]
    table.add_row(
        "near-constant dims",
        ", ".join(f"{d['dim']} (std {d['std']:.2g})" for d in near) if near else "none",
    )
    table.add_row("exact duplicate groups", _list_or_none(r["exact_duplicate_groups"]))
    pairs = r["near_duplicate_pairs"]
    shown = ", ".join(f"{p['i']}~{p['j']} ({p['cosine']:.3f})" for p in pairs[:5])
    table.add_row(f"near duplicates (cos ≥ {r['near_duplicate_cosine']})", f"{len(pairs)} pairs" + (f": {shown}" if pairs else ""))
    console.print(table)


def _list_or_none(items: list) -> str:
    return "none" if not items else ", ".join(map(str, items[:10])) + (" …" if len(items) > 10 else "")


@app.command()
def train(
    out: str = typer.Option(..., "--out", help="Run directory to create (or continue with --resume)."),
    data: Optional[str] = typer.Option(None, help="Training data spec (default builtin:sonar-gsm8k-1k)."),
    arch: Optional[str] = typer.Option(None, help="Architecture name (see `flowstudy info`)."),
    flow: Optional[str] = typer.Option(None, help="Flow method: icfm, otcfm, otcfm-sinkhorn, si-linear, si-trig, reflow."),
    steps: Optional[int] = typer.Option(None, help="Optimiser steps (default: the architecture's recipe)."),
    epochs: Optional[float] = typer.Option(None, help="Passes over the training set (instead of --steps)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size"),
    lr: Optional[float] = typer.Option(None),
    seed: Optional[int] = typer.Option(None),
    device: Optional[str] = typer.Option(None, help="auto, cpu, cuda, cuda:1 ..."),
    aug: Optional[list[str]] = typer.Option(None, help="Augmentation NAME:STRENGTH (mixup, noise, dropout); repeatable."),
    val: Optional[str] = typer.Option(None, help="Held-out data spec (default: the split beside --data)."),
    subset: Optional[int] = typer.Option(None, help="Train on a nested subset of this many rows."),
    patience: Optional[int] = typer.Option(None, help="Early stopping after this many validations without improvement."),
    base_field: Optional[str] = typer.Option(
        None, "--base-field", help="none, or gaussian: the network learns the residual of the data's Gaussian-fit velocity."
    ),
    base_fit: Optional[str] = typer.Option(None, "--base-fit", help="Rows the base field is fitted to: augmented or train."),
    residual_rank: Optional[int] = typer.Option(
        None, "--residual-rank", help="With --base-field gaussian: the network acts only in the top-k principal subspace (0: in the whole space)."
    ),
    residual_input: Optional[str] = typer.Option(None, "--residual-input", help="What that network reads: subspace or full."),
    residual_scale: Optional[float] = typer.Option(None, "--residual-scale", help="alpha in v = base + alpha * residual."),
    residual_scales: Optional[list[float]] = typer.Option(
        None, "--residual-scales", help="After training, choose alpha from these by validation NLL; repeatable."
    ),
    select_by: Optional[str] = typer.Option(None, "--select-by", help="What picks best.pt: loss or nll (validation)."),
    teacher: Optional[str] = typer.Option(None, help="Reflow: run directory whose ODE provides the pairs."),
    model_opt: Optional[list[str]] = typer.Option(None, "--model-opt", help="Model override KEY=VALUE; repeatable."),
    flow_opt: Optional[list[str]] = typer.Option(None, "--flow-opt", help="Flow override KEY=VALUE; repeatable."),
    tracker: Optional[str] = typer.Option(None, help="tensorboard or mlflow (local store in the run directory)."),
    config: Optional[str] = typer.Option(None, "--config", help="TOML/YAML file with any of these options."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from checkpoints/last.pt."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
    no_graph: bool = typer.Option(False, "--no-graph", help="Run each step eagerly instead of as a CUDA graph."),
    precision: Optional[str] = typer.Option(
        None, help="fp32, tf32 (TF32 matrix products on CUDA) or bf16 (autocast on CUDA); the CPU computes in fp32."
    ),
    compile_mode: Optional[str] = typer.Option(
        None, "--compile", help="torch.compile the step's velocity field first: default or max-autotune-no-cudagraphs."
    ),
) -> None:
    """Train a flow-matching prior; writes config, metrics.jsonl and checkpoints/{best,last}.pt."""
    from flowstudy.api import fit

    options = dict(
        flow=flow, steps=steps, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed,
        device=device, aug=aug or None, subset=subset, patience=patience, base_field=base_field, teacher=teacher, tracker=tracker,
        base_fit=base_fit, residual_rank=residual_rank, residual_input=residual_input, residual_scale=residual_scale,
        residual_scales=residual_scales or None, select_by=select_by,
        model=parse_options(model_opt, "--model-opt") or None, flow_options=parse_options(flow_opt, "--flow-opt") or None,
        graph=False if no_graph else None, precision=precision, compile=compile_mode,
    )
    run = fit(data, out=out, arch=arch, val=val, config=config, resume=resume, progress=not quiet, **options)
    result, cfg = run.result, run.config
    early = " (stopped early)" if result.stopped_early else ""
    console.print(
        f"trained {cfg['arch']} / {cfg['flow']}: {result.steps}/{result.total_steps} steps{early} in {result.seconds:.0f} s; "
        f"best val loss {result.best_val_loss:.4f} -> {out}/checkpoints/best.pt"
    )


@app.command()
def sample(
    run_dir: str = typer.Argument(..., help="A run directory."),
    out: str = typer.Option(..., "--out", help="Output .npy (float32 [N, D], original space)."),
    n: int = typer.Option(1000, "--n", help="Number of samples."),
    solver: str = typer.Option(SAMPLE_SOLVER, help="euler, midpoint, heun, rk4, dopri5."),
    steps: int = typer.Option(SAMPLE_STEPS, help="Solver steps (midpoint: 2 network evaluations each)."),
    seed: int = typer.Option(0),
    device: str = typer.Option("auto"),
    checkpoint: str = typer.Option("best", help="best or last."),
    nearest_text: bool = typer.Option(False, "--nearest-text", help="Also write the nearest training text of each sample."),
) -> None:
    """Draw samples from a trained run, in the original embedding space."""
    from pathlib import Path

    from flowstudy.api import load_run
    from flowstudy.errors import ConfigError
    from flowstudy.io import atomic_save_npy

    if n < 1:
        raise ConfigError(f"--n must be >= 1; got {n}")
    run = load_run(run_dir, checkpoint=checkpoint, device=device)
    drawn = run.draw(n, solver=solver, steps=steps, seed=seed)
    atomic_save_npy(Path(out), drawn.x)
    console.print(f"wrote {n} samples [{n}, {drawn.x.shape[1]}] to {out} ({solver}, {steps} steps, {drawn.nfe} NFE)")
    if nearest_text:
        _write_nearest_texts(run, drawn, Path(out))


def _write_nearest_texts(run, drawn, out) -> None:
    from flowstudy.io import atomic_write_text

    lines = [json.dumps(match.to_dict()) for match in run.nearest_texts(drawn)]
    path = out.with_suffix(".texts.jsonl")
    atomic_write_text(path, "\n".join(lines) + "\n")
    console.print(f"wrote nearest training texts to {path} (distances in standardised space)")


@app.command()
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
    from flowstudy.api import load_run

    report = load_run(run_dir, checkpoint=checkpoint, device=device).reconstruct(data, solver=solver, steps=steps)
    if as_json:
        print(json.dumps(report.to_dict(), indent=2))
        return
    table = Table(title=f"Reconstruction of {report.source} ({solver}, {steps} steps each way)", show_header=False)
    for key, value in report.to_dict().items():
        table.add_row(key, f"{value:.6g}" if isinstance(value, float) else str(value))
    console.print(table)


@app.command()
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
    from flowstudy.api import evaluate as evaluate_target
    from flowstudy.evaluation import NLLOptions

    options = NLLOptions(nll_estimator, nll_probes, nll_solver, nll_steps, nll_rows, nll_graph) if nll else None
    result = evaluate_target(
        target, reference=reference, train=train, n=n, solver=solver, steps=steps, seed=seed, device=device, nll=options
    )
    if as_json:
        print(json.dumps(result.to_dict(), indent=2))
        return
    render_evaluation(result.table, f"{target} vs {result.reference} (standardised with {result.train})")
    for line in result.summary_lines():
        console.print(line, highlight=False)


def render_evaluation(table, title: str) -> None:
    """A rich table of the model row and its baselines, the flags underneath."""
    from flowstudy.metrics.table import BADNESS

    metrics = [m for m in BADNESS if any(m in r for r in table.rows.values())]
    ranked = table.ranked_metrics() if table.sanity else metrics
    out = Table(title=title)
    out.add_column("row", style="bold")
    for m in metrics:
        out.add_column(m if m in ranked else f"{m} †", justify="right")
    for row in table.to_rows():
        out.add_row(str(row["row"]), *[f"{row[m]:.4g}" if m in row else "-" for m in metrics])
    console.print(out)
    console.print(
        "fidelity/novelty: median NN distance over that of real held-out rows (1 = real; novelty 0 = copies); "
        f"distribution metrics on {table.n_eval} rows per split (Fréchet distance is biased upward at small N)."
    )
    if len(ranked) < len(metrics):
        console.print("†: fails the sanity check on this data (real < Gaussian fit < noise): shown, not ranked.")
    for flag in table.flags:
        console.print(f"[bold yellow]FLAG:[/] {flag}", highlight=False)


_register_study_commands()
_register_optimize_commands()


def _cli_exceptions() -> tuple[tuple[type, ...], tuple[type, ...], tuple[type, ...]]:
    """(usage errors, exits, aborts) of click and of the copy of click that typer >= 0.2x vendors."""
    import click

    usage, exits, aborts = [click.ClickException], [click.exceptions.Exit], [click.exceptions.Abort]
    try:
        from typer import exceptions as typer_exceptions
        from typer._click import exceptions as vendored

        usage.append(vendored.ClickException)
        exits.append(typer_exceptions.Exit)
        aborts.append(typer_exceptions.Abort)
    except ImportError:  # typer that uses click itself
        pass
    return tuple(usage), tuple(exits), tuple(aborts)


def main(argv: list[str] | None = None) -> int:
    """Console entry point: run the app, turning user errors into one line and exit code 2."""
    usage_errors, exits, aborts = _cli_exceptions()
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    args = [a for a in args if a != "--debug"]
    try:
        result = app(args=args, prog_name="flowstudy", standalone_mode=False)
        return int(result or 0) if isinstance(result, int) else 0
    except exits as exit_:
        return exit_.exit_code
    except aborts:
        err_console.print("aborted")
        return 130
    except usage_errors as err:
        err.show()
        return err.exit_code
    except (FlowstudyError, ImportError) as err:  # ImportError: a missing optional extra, with its pip line
        if debug:
            raise
        err_console.print(f"[bold red]error:[/] {err}", highlight=False, soft_wrap=True)
        return 2
    except KeyboardInterrupt:
        err_console.print("interrupted")
        return 130
    except Exception as err:  # a bug, not a user error: still one line unless --debug
        if debug:
            raise
        err_console.print(
            f"[bold red]internal error:[/] {type(err).__name__}: {err} (rerun with --debug for the traceback)",
            highlight=False,
            soft_wrap=True,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
