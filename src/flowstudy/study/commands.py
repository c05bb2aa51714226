"""CLI commands ``flowstudy study`` and ``flowstudy report`` (added to the app by :func:`register`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer


def register(app: typer.Typer) -> None:
    """Add the ``study`` and ``report`` commands to ``app``."""
    app.command("study")(study_command)
    app.command("report")(report_command)


def study_command(
    spec: str = typer.Argument(..., help="Study file (TOML with tables study, base, axes and optional extra)."),
    out: Optional[str] = typer.Option(None, "--out", help="Study folder (default studies/runs/<name>)."),
    executor: Optional[str] = typer.Option(None, "--executor", help="local (worker processes), threads (one process, a CUDA stream per task: runs side by side on one GPU) or ray."),
    address: Optional[str] = typer.Option(None, "--address", help="Ray cluster address (implies --executor ray)."),
    workers: Optional[int] = typer.Option(None, "--workers", help="Local worker processes (default: the spec's, else 1)."),
    group_size: Optional[int] = typer.Option(
        None, "--group-size", help="Train runs that share a network in stacked groups of up to N (default: the spec's [study] group_size)."
    ),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
) -> None:
    """Run a study: train, sample and evaluate every cell not yet done; print the comparison table."""
    from flowstudy.console import make_console

    from flowstudy.study.runner import DEFAULT_ROOT, run_study
    from flowstudy.study.spec import load_spec
    from flowstudy.study.store import STORE_NAME, ResultStore

    parsed = load_spec(spec)
    study_dir = Path(out) if out else DEFAULT_ROOT / parsed.name
    results = run_study(parsed, study_dir, executor=executor, address=address, workers=workers, progress=not quiet, group_size=group_size)
    console = make_console()
    if results:
        console.print(comparison_table(results, parsed.name))
    failures = ResultStore(study_dir / STORE_NAME).failures([c.id for c in parsed.cells])
    console.print(
        f"{len(results)}/{len(parsed.cells)} cells done -> {study_dir} "
        f"(results.csv, results.jsonl; `flowstudy report {study_dir}` writes the report)"
    )
    if failures:
        raise typer.Exit(1)


def report_command(
    study_dir: str = typer.Argument(..., help="A study folder (written by `flowstudy study`)."),
    reference: Optional[str] = typer.Option(
        None, "--reference", help="Configuration to test the others against, e.g. 'mlp/icfm' or 'arch=mlp,flow=icfm'."
    ),
) -> None:
    """Write report.md and a self-contained report.html (tables over seeds, baselines, figures)."""
    from flowstudy.console import make_console

    from flowstudy.study.report import write_report

    paths = write_report(study_dir, reference=reference)
    make_console().print(f"wrote {paths.markdown} and {paths.html} ({len(paths.figures)} figures)")


def comparison_table(results: list[dict[str, Any]], name: str):
    """A rich table: configurations (mean ± CI half-width over seeds), then the baselines."""
    from rich.table import Table

    from flowstudy.study.summary import best_labels, gaussian_flags, summarize_baselines, summarize_groups

    metrics = ("fidelity", "novelty", "c2st_auc", "mmd", "coverage", "best_val_loss")
    groups = summarize_groups(results, metrics)
    baselines = next(iter(summarize_baselines(results, metrics).values()), {})
    table = Table(title=f"Study {name}: mean ± 95 % CI over seeds (bold: best; ⚠: not better than the Gaussian fit)")
    table.add_column("configuration")
    table.add_column("seeds", justify="right")
    for m in metrics:
        table.add_column(m, justify="right")
    bests = {m: best_labels(groups, m) for m in metrics}
    for g in groups:
        flag = " ⚠" if gaussian_flags(g, baselines.get("gaussian")) else ""
        cells = [_pm(g.stats.get(m), g.label in bests[m]) for m in metrics]
        table.add_row(g.label + flag, str(len(g.seeds)), *cells)
    table.add_section()
    for summary in baselines.values():
        table.add_row(f"[dim]{summary.label}[/]", str(len(summary.seeds)), *[_pm(summary.stats.get(m), False) for m in metrics])
    return table


def _pm(stat, best: bool) -> str:
    import math

    if stat is None:
        return "–"
    text = f"{stat.mean:.4g}"
    if stat.n > 1 and math.isfinite(stat.hi) and stat.std > 1e-12 * abs(stat.mean):
        text += f" ± {stat.hi - stat.mean:.2g}"
    return f"[bold green]{text}[/]" if best else text


__all__ = ["comparison_table", "register", "report_command", "study_command"]
