"""``flowstudy study`` and ``flowstudy report``."""

from __future__ import annotations

from typing import Optional

import typer
from rich.table import Table

from flowstudy import api
from flowstudy.console import labelled, make_console, styled


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
    quiet: bool = typer.Option(False, "--quiet", help="No progress lines."),
    status: bool = typer.Option(False, "--status", help="Print the progress of the study in folder SPEC (its status.json) and exit."),
) -> None:
    """Run a study: train, sample and evaluate every cell not yet done, write its report; print the comparison table."""
    if status:  # SPEC: the study folder, or the study file (its folder: --out or the default)
        make_console().print(api.study_status(spec, out=out)["line"], highlight=False)
        return
    try:
        study = api.run_study(spec, out=out, executor=executor, address=address, workers=workers, group_size=group_size,
                              progress=not quiet, report=True)
    except KeyboardInterrupt as stop:  # the runner said what was saved; exit as the signal would (SIGINT: 130)
        raise typer.Exit(128 + getattr(stop, "signum", 2)) from None
    console = make_console()
    if study.results:
        console.print(comparison_table(study.comparison()))
    console.print(
        f"{len(study.results)}/{study.n_cells} cells done in {api.study_status(study)['elapsed_s']:.1f} s wall time -> {study.path} "
        f"(results.csv, results.jsonl{'' if study.failures else ', report.md, report.html'})"
    )
    if study.failures:
        raise typer.Exit(1)


def report_command(
    study_dir: str = typer.Argument(..., help="A study folder (written by `flowstudy study`)."),
    reference: Optional[str] = typer.Option(
        None, "--reference", help="Configuration to test the others against, e.g. 'mlp/icfm' or 'arch=mlp,flow=icfm'."
    ),
) -> None:
    """Write report.md and a self-contained report.html (tables over seeds, baselines, figures)."""
    paths = api.report(study_dir, reference=reference)
    make_console().print(f"wrote {paths.markdown} and {paths.html} ({len(paths.figures)} figures)")


def comparison_table(comparison: api.Comparison) -> Table:
    """A rich table: configurations (mean ± CI half-width over seeds), then the baselines."""
    table = Table(title=f"Study {comparison.name}: mean ± 95 % CI over seeds (bold: best; ⚠: not better than the Gaussian fit)")
    table.add_column("configuration")
    table.add_column("seeds", justify="right")
    for m in comparison.metrics:
        table.add_column(m, justify="right")
    for row in comparison.configurations:
        flag = " ⚠" if row.not_better_than_gaussian else ""
        table.add_row(row.label + flag, str(row.seeds), *[_pm(row.values.get(m), m in row.best) for m in comparison.metrics])
    table.add_section()
    for row in comparison.baselines:
        table.add_row(styled(row.label, "dim"), str(row.seeds), *[_pm(row.values.get(m), False) for m in comparison.metrics])
    return table


def _pm(value: tuple[float, float | None] | None, best: bool) -> str:
    if value is None:
        return "–"
    mean, half_width = value
    text = f"{mean:.4g}" + (f" ± {half_width:.2g}" if half_width is not None else "")
    return styled(text, "bold green") if best else text


__all__ = ["comparison_table", "register", "report_command", "study_command"]
