"""``flowstudy optimize run|ask|tell|report``: :func:`flowstudy.api.optimize` and its ask/tell loop."""

from __future__ import annotations

from typing import Optional

import numpy as np
import typer

from flowstudy import api
from flowstudy.console import make_console
from flowstudy.options import parse_options

optimize_app = typer.Typer(no_args_is_help=True, help="Guided optimisation of a black-box score over the prior's embeddings.")


def register(app: typer.Typer) -> None:
    """Add the ``optimize`` sub-app to ``app``."""
    app.add_typer(optimize_app, name="optimize")


_METHOD = typer.Option("linear", "--method", help="linear, prior, pool, rank, guided, bo, turbo, latent.")
_BUDGET = typer.Option(100, "--budget", help="Evaluations in all, the initial design included.")
_Q = typer.Option(4, "--q", help="Candidates per round.")
_N_INIT = typer.Option(20, "--n-init", help="Initial design: prior samples (training rows for pool).")
_SEED = typer.Option(0, "--seed")
_STEPS = typer.Option(32, "--steps", help="Euler steps per decoding.")
_PCA = typer.Option(32, "--pca", help="GP inputs: top-k whitened principal components (0: all coordinates).")
_KERNEL = typer.Option("rbf", "--kernel", help="rbf or rbf+linear.")
_OPT = typer.Option(None, "--opt", help="Method option KEY=VALUE, e.g. strength=0.3; repeatable.")


@optimize_app.command("run")
def run_command(
    prior: str = typer.Argument(..., help="A run directory, or gaussian:DATASPEC for the Gaussian fit alone."),
    objective: str = typer.Option(..., "--objective", help="cosine:DATASPEC:ROW, topic:DATASPEC:WORD, python:MODULE:FUNCTION [,noise=SIGMA]."),
    out: str = typer.Option(..., "--out", help="State directory (resumed when it exists)."),
    method: str = _METHOD, budget: int = _BUDGET, q: int = _Q, n_init: int = _N_INIT, seed: int = _SEED,
    steps: int = _STEPS, pca: int = _PCA, kernel: str = _KERNEL, opt: Optional[list[str]] = _OPT,
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
) -> None:
    """Optimise OBJECTIVE over samples of PRIOR; every evaluation is saved, a killed run resumes."""
    console = make_console()
    settings = dict(out=out, method=method, budget=budget, q=q, n_init=n_init, seed=seed, steps=steps, pca=pca, kernel=kernel,
                    options=parse_options(opt, "--opt"))
    if quiet:
        result = api.optimize(prior, objective, **settings)
    else:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console) as bar:
            task = bar.add_task(f"{method}: best -", total=budget)

            def update(so_far: api.OptimizationResult) -> None:
                bar.update(task, completed=len(so_far.y), description=f"{method}: best {so_far.best_score:.4f}")

            result = api.optimize(prior, objective, on_round=update, **settings)
    console.print(
        f"{len(result.y)} evaluations -> {out}; best {result.best_score:.4f} (evaluation {result.best_index}, "
        "evaluations.jsonl has its nearest text)"
    )


@optimize_app.command("ask")
def ask_command(
    out: str = typer.Argument(..., help="State directory (created with --prior on the first ask)."),
    q: Optional[int] = typer.Option(None, "--q", help="Candidates to ask for (default: the state's q)."),
    prior: Optional[str] = typer.Option(None, "--prior", help="Run directory or gaussian:DATASPEC (first ask only)."),
    method: str = _METHOD, budget: int = _BUDGET, n_init: int = _N_INIT, seed: int = _SEED,
    steps: int = _STEPS, pca: int = _PCA, kernel: str = _KERNEL, opt: Optional[list[str]] = _OPT,
) -> None:
    """Write the next candidates to OUT/pending.npy (original space) and their nearest texts to pending.jsonl.

    The first ask hands out the initial design (--n-init prior samples), later ones --q candidates;
    asking again before `tell` hands out the same candidates."""
    loop = api.ask_tell(out, prior=prior, method=method, budget=budget, q=q or 4, n_init=n_init, seed=seed, steps=steps, pca=pca,
                        kernel=kernel, options=parse_options(opt, "--opt"))
    candidates = loop.ask(q)
    make_console().print(f"wrote {candidates.x.shape[0]} candidates to {out}/pending.npy and their nearest texts to {out}/pending.jsonl")


@optimize_app.command("tell")
def tell_command(
    out: str = typer.Argument(..., help="State directory with pending candidates."),
    scores: str = typer.Argument(..., help="Scores: a file (.npy, .json, .txt one per line) or 0.1,0.5,... inline."),
    candidates: Optional[str] = typer.Option(None, "--candidates", help="Scored embeddings .npy [q, D] instead of the pending ones."),
) -> None:
    """Record the scores of the pending candidates (all or nothing: bad input leaves the state untouched)."""
    loop = api.ask_tell(out)
    result = loop.tell(scores, np.load(candidates, allow_pickle=False) if candidates else None)
    make_console().print(f"{len(result.y)}/{loop.budget} evaluations; best {result.best_score:.4f}")


@optimize_app.command("report")
def report_command(
    dirs: list[str] = typer.Argument(..., help="Optimisation directories, or folders holding them."),
    out: Optional[str] = typer.Option(None, "--out", help="Report folder (default: the first directory)."),
    no_realism: bool = typer.Option(False, "--no-realism", help="Skip the realism table (loads every prior)."),
) -> None:
    """report.md, report.html and best_so_far.png: curves with 95 % CIs, final-best table, texts, realism."""
    paths = api.optimization_report(dirs, out=out, realism=not no_realism)
    make_console().print(f"wrote {paths.markdown}, {paths.html} and {paths.figure}")


__all__ = ["register"]
