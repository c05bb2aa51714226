"""The study report: the verdict first, then figures, details, significance and the metrics' key.

``write_report(study_dir)`` writes ``report.md`` (figures beside it in ``figures/``) and a
self-contained ``report.html`` (figures embedded as PNG data URIs, so it opens anywhere), both in
the look of :mod:`flowstudy.reporting`. It opens with what happened to the cells ("52 of 63 cells
done, 0 failed, 11 not run") and a leaderboard against the Gaussian fit
(:mod:`flowstudy.study.leaderboard`): per configuration, the metrics that decide (the NLL gap
first, then the sample metrics that pass the baseline sanity check) with intervals, how many of
them it beats the Gaussian fit on, bold only where a configuration is significantly best. Then one
small panel per ranked metric, the training curves and the PCA scatter; then every metric with the
baseline rows (Gaussian fit, noise, training copies, real held-out data, evaluated by the same code
on the same held-out splits), the paired tests against a reference, and which metrics rank.

A study folder holds ``study.json`` and its results store; a folder of committed results holds
``results.csv`` beside ``spec.toml`` (:mod:`flowstudy.study.exported`). Both report alike.
"""

from __future__ import annotations

import html
import json
import math
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

from flowstudy.errors import ConfigError
from flowstudy.metrics.table import FLAGGED_METRICS
from flowstudy.reporting import Table, fmt, html_figure, html_list, html_page, plural
from flowstudy.study.labels import common_label, short_labels, varying_axes
from flowstudy.study.leaderboard import leaderboard_table, verdict, verdict_lines
from flowstudy.study.summary import (
    BASELINE_ROWS,
    COST_METRICS,
    DIRECTIONS,
    QUALITY_METRICS,
    Comparison,
    GroupSummary,
    compare_to_reference,
    find_group,
    gaussian_flags,
    header,
    ranked_metrics,
    sanity_summary,
    separated_best,
    summarize_baselines,
    summarize_groups,
)


# ----------------------------------------------------------------------------- tables
def format_ci(stat) -> str:
    """"0.934 [0.9131, 0.9549]" (mean [95 % CI]); just the mean for one seed or no spread."""
    if stat.n < 2 or not math.isfinite(stat.lo) or stat.std <= 1e-12 * abs(stat.mean):
        return fmt(stat.mean)
    return f"{fmt(stat.mean)} [{fmt(stat.lo)}, {fmt(stat.hi)}]"


def metrics_table(
    title: str,
    groups: Sequence[GroupSummary],
    metrics: Sequence[str],
    baselines: dict[str, GroupSummary] | None = None,
    gaussian_check: bool = True,
    ranked: Sequence[str] | None = None,
    labels: dict[str, str] | None = None,
) -> Table:
    """Configurations (mean [95 % CI] over seeds), then baseline rows. Bold: the significantly best
    of a ranked column (:func:`~flowstudy.study.summary.separated_best`).

    ranked: the metrics that may be marked best (default: all); the others' headers say "not ranked".
    """
    metrics = [m for m in metrics if any(m in g.stats for g in groups)]
    unranked = [] if ranked is None else [m for m in metrics if m not in ranked]
    headers = ["configuration", "seeds"] + [f"{header(m)} (not ranked)" if m in unranked else header(m) for m in metrics]
    headers += ["beats Gaussian (seeds)"] if gaussian_check else []
    rows, best = [], set()
    winners = {m: separated_best(groups, m) for m in metrics if m not in unranked}
    gaussian = (baselines or {}).get("gaussian")
    for i, g in enumerate(groups):
        flagged = gaussian_flags(g, gaussian, ranked) if gaussian_check else []
        label = (labels or {}).get(g.label, g.label) + (" ⚠" if flagged else "")
        row = [label, str(len(g.seeds))] + [format_ci(g.stats[m]) if m in g.stats else "–" for m in metrics]
        if gaussian_check:
            won, total = g.beats_gaussian
            row.append(f"{won}/{total}" + (f" (mean not better on {', '.join(flagged)})" if flagged else ""))
        rows.append(row)
        best |= {(i, 2 + j) for j, m in enumerate(metrics) if m in winners and winners[m][2] and winners[m][0] == g.label}
    separator = len(rows)
    for row_name in BASELINE_ROWS:
        b = (baselines or {}).get(row_name)
        if b is None or not any(m in b.stats for m in metrics):
            continue
        row = [f"baseline: {b.label}", str(len(b.seeds))] + [format_ci(b.stats[m]) if m in b.stats else "–" for m in metrics]
        rows.append(row + ([""] if gaussian_check else []))
    note = "Mean [95 % CI] over seeds; bold: significantly best (its interval clear of the runner-up's); ⚠: mean not better than the Gaussian fit."
    return Table(title, headers, rows, best, separator if separator < len(rows) else None, note if gaussian_check else "")


def significance_table(comparisons: list[Comparison], reference: str, alpha: float = 0.05, labels: dict[str, str] | None = None) -> Table:
    """Rows: configurations; columns: metrics; entries: Δ badness and Holm-adjusted p (* below alpha)."""
    metrics = list(dict.fromkeys(c.metric for c in comparisons))
    groups = list(dict.fromkeys(c.group for c in comparisons))
    lookup = {(c.group, c.metric): c for c in comparisons}
    rows, best = [], set()
    for i, g in enumerate(groups):
        row = [(labels or {}).get(g, g)]
        for j, m in enumerate(metrics):
            c = lookup.get((g, m))
            if c is None:
                row.append("–")
                continue
            star = "*" if c.p_holm < alpha else ""
            row.append(f"Δ {c.mean_difference:+.3g}, p {c.p_holm:.3g}{star}")
            if star:
                best.add((i, j + 1))
        rows.append(row)
    tests = sorted({f"{c.test} (n = {c.n})" for c in comparisons})
    title = f"Against the reference '{(labels or {}).get(reference, reference)}': {', '.join(tests)}, Holm-adjusted p"
    return Table(title, ["configuration"] + [header(m) for m in metrics], rows, best)


# ----------------------------------------------------------------------------- report
@dataclass(frozen=True)
class ReportPaths:
    """Files written by :func:`write_report`: report.md, report.html and the figures (PNG)."""

    markdown: Path
    html: Path
    figures: list[Path]


def load_study(study_dir: str | Path) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
    """(study.json, done results in cell order, failures) of a study folder, or of a folder of
    exported results (results.csv beside spec.toml: :func:`flowstudy.study.exported.load_exported`)."""
    from flowstudy.study.exported import RESULTS_CSV, load_exported
    from flowstudy.study.store import STORE_NAME, ResultStore

    study_dir = Path(study_dir)
    meta_path = study_dir / "study.json"
    if not meta_path.exists():
        if (study_dir / RESULTS_CSV).exists():
            return load_exported(study_dir)
        raise ConfigError(f"{study_dir}: not a study folder (no study.json or results.csv); run `flowstudy study SPEC.toml` first")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    ids = [c["id"] for c in meta["cells"]]
    store_path = study_dir / STORE_NAME
    if not store_path.exists():
        return meta, [], []
    store = ResultStore(store_path)
    return meta, store.results(ids), store.failures(ids)


@dataclass
class _Content:
    """Everything both renderings show, in reading order."""

    meta: dict[str, Any]
    status: str
    verdicts: list[tuple[str, list[str], Table]]
    key: list[str]
    figures: list[tuple[str, Path]]
    tables: list[Table]
    paragraphs: dict[str, list[str]]


def write_report(study_dir: str | Path, reference: str | None = None) -> ReportPaths:
    """Write ``report.md``, ``report.html`` and ``figures/*.png`` into ``study_dir``."""
    study_dir = Path(study_dir)
    meta, results, failures = load_study(study_dir)
    if not results:
        raise ConfigError(f"{study_dir}: no finished cells to report on")
    reference = reference or meta.get("reference")
    group_values = {c["group"]: c.get("values", c["axes"]) for c in meta["cells"]}
    groups = summarize_groups(results, QUALITY_METRICS + COST_METRICS, group_values)
    baselines_by_data = summarize_baselines(results, QUALITY_METRICS)
    ranked = ranked_metrics(results, QUALITY_METRICS)
    labels = short_labels(groups)
    verdicts, boards = _verdicts(groups, baselines_by_data, ranked, labels)
    tables = _tables(groups, baselines_by_data, ranked, labels)
    comparisons = compare_to_reference(groups, reference, QUALITY_METRICS if ranked is None else ranked) if reference else []
    if comparisons:
        tables.append(significance_table(comparisons, find_group(groups, reference).label, labels=labels))
    figures = _figures(study_dir, meta, results, boards, baselines_by_data, labels)
    paragraphs = _paragraphs(meta, results, failures, groups, baselines_by_data, reference, ranked)
    if reference and not comparisons:
        paragraphs["significance"].append("No test was possible: it needs at least two seeds shared with the reference.")
    content = _Content(meta, _status(meta, results, failures), verdicts, _key(groups, labels), figures, tables, paragraphs)
    from flowstudy.io import atomic_write_text

    md_path, html_path = study_dir / "report.md", study_dir / "report.html"
    atomic_write_text(md_path, _markdown(content, study_dir))
    atomic_write_text(html_path, _html(content))
    return ReportPaths(md_path, html_path, [path for _, path in figures])


def _status(meta, results, failures) -> str:
    planned = meta.get("planned_cells", len(meta["cells"]))
    not_run = max(planned - len(results) - len(failures), 0)
    configs = len({r["group"] for r in results})
    return (
        f"{len(results)} of {plural(planned, 'cell')} done, {len(failures)} failed, {not_run} not run; "
        f"{plural(configs, 'configuration')} × {plural(len(meta.get('seeds') or []), 'seed')}."
    )


def _verdicts(groups, baselines_by_data, ranked, labels):
    """Per data key: (title, sentences, leaderboard) and (its groups in leaderboard order, metrics)."""
    out, boards = [], []
    several = len(baselines_by_data) > 1
    for key, baselines in baselines_by_data.items():
        members = [g for g in groups if g.data_key == key]
        v = verdict(members, baselines.get("gaussian"), ranked)
        title = f"Leaderboard against the Gaussian fit — data {key[0]}, {key[1]} samples" if several else "Leaderboard against the Gaussian fit"
        out.append((title, verdict_lines(v, labels, format_ci), leaderboard_table(v, labels, baselines, format_ci, title)))
        boards.append((v.order, v.metrics, baselines))
    return out, boards


def _key(groups, labels) -> list[str]:
    """What the short labels stand for."""
    if all(labels[g.label] == g.label for g in groups):
        return []
    common = common_label(groups)
    axes = ", ".join(varying_axes([g.values for g in groups]))
    return [
        f"Labels name only the axes that vary ({axes}); where most configurations share a value, it is left "
        f"out. The most common configuration ({common}) is labelled in full."
    ]


def _tables(groups, baselines_by_data, ranked, labels) -> list[Table]:
    tables = []
    several = len(baselines_by_data) > 1
    for key, baselines in baselines_by_data.items():
        members = [g for g in groups if g.data_key == key]
        suffix = f" — data {key[0]}, {key[1]} samples" if several else ""
        title = f"Every sample metric (mean [95 % CI] over seeds){suffix}"
        tables.append(metrics_table(title, members, QUALITY_METRICS, baselines, ranked=ranked, labels=labels))
    tables.append(metrics_table("Training and sampling cost", groups, COST_METRICS, gaussian_check=False, labels=labels))
    return tables


def _figures(study_dir, meta, results, boards, baselines_by_data, labels) -> list[tuple[str, Path]]:
    from flowstudy.study import plots

    fig_dir = study_dir / "figures"
    for stale in fig_dir.glob("bars_*.png"):  # the per-axis bars of earlier versions
        stale.unlink()
    figures: list[tuple[str, Path | None]] = []
    for i, (order, metrics, baselines) in enumerate(boards):
        name = "metrics.png" if i == 0 else f"metrics_{i + 1}.png"
        caption = "Ranked metrics: mean and 95 % CI over seeds; dashed: Gaussian fit, dotted: real held-out data"
        figures.append((caption, plots.metric_panels(order, baselines, metrics, fig_dir / name, labels)))
    baselines = next(iter(baselines_by_data.values()), {})
    values = {c["group"]: c.get("values", c["axes"]) for c in meta["cells"]}
    figures.append(("Validation loss during training, one line per seed",
                    plots.training_curves(study_dir, results, fig_dir / "training_curves.png", values)))
    figures.append(("Real held-out rows over generated samples and the Gaussian fit (first two principal components)",
                    plots.pca_panels(study_dir, results, fig_dir / "pca.png")))
    if any(a in meta["axes"] for a in ("sample_steps", "sample_solver")) and boards:
        figures.append(("Ranked metrics against sampling cost",
                        plots.quality_vs_nfe(boards[0][0], baselines, boards[0][1], fig_dir / "quality_vs_nfe.png")))
    return [(title, path) for title, path in figures if path is not None]


def _paragraphs(meta, results, failures, groups, baselines_by_data, reference, ranked) -> dict[str, list[str]]:
    """Plain-text paragraphs shared by the markdown and HTML renderings."""
    ev = meta.get("evaluation", {})
    setup = [
        f"Sampling: {ev.get('n_samples')} samples per cell, solver {ev.get('solver')} with {ev.get('steps')} steps "
        f"(unless a sampling axis says otherwise). Evaluation: eval_seed {ev.get('eval_seed')}"
        + (f", {ev.get('n_splits')} held-out half-splits ({ev.get('n_dist_splits')} for distribution metrics)" if ev.get("n_splits") else "")
        + "; every cell is compared with the full training set of its data and the same held-out rows, in the space "
        "standardised with the full training set's statistics."
    ]
    legend = [f"{header(m)}: {DIRECTIONS[m][1]}" for m in QUALITY_METRICS + COST_METRICS if m in DIRECTIONS]
    flags = []
    for key, baselines in baselines_by_data.items():
        for g in groups:
            if g.data_key == key and (bad := gaussian_flags(g, baselines.get("gaussian"), ranked)):
                flags.append(f"{g.label}: mean does NOT beat the Gaussian fit on {', '.join(bad)} (⚠ in the table)")
    if not flags:
        decided = "held-out NLL" if any("nll" in g.stats for g in groups) else " and ".join(ranked if ranked is not None else FLAGGED_METRICS)
        flags = [f"Every configuration's mean beats the Gaussian fit on {decided}."]
    if reference:
        significance = [
            f"Reference: {reference}. Δ is the mean over seeds of the difference in distance from the ideal "
            "(negative: nearer the ideal than the reference); * marks Holm-adjusted p < 0.05 (paired t-test below "
            "6 seeds, Wilcoxon signed-rank from 6)."
        ]
    else:
        significance = ["No reference configuration named (pass --reference NAME or set [study] reference)."]
    failed = [f"{f['id']}: {f['error']} (attempts: {f['attempts']})" for f in failures]
    return {"setup": setup, "legend": legend, "flags": flags, "sanity": _sanity_lines(results, ranked),
            "significance": significance, "failed": failed}


def _sanity_lines(results, ranked) -> list[str]:
    """Which metrics order real held-out < Gaussian fit < noise in every cell, with the smallest margin."""
    summary = sanity_summary(results, QUALITY_METRICS)
    if not summary:
        return ["The cells record no sanity check (evaluated before it existed): every metric ranks; the leaderboard "
                "shows fidelity, novelty, the linear C2ST, density and coverage."]
    lines = [
        "A metric ranks configurations only if, in every cell, it puts real held-out rows nearer its ideal than "
        "the Gaussian fit, and the Gaussian fit nearer than noise, each by at least 2 CI half-widths (paired over "
        "held-out splits; novelty must also give training copies ≈ 0). Held-out NLL, when computed, always ranks."
    ]
    for m, (passed, total, margin) in summary.items():
        verdict_text = "ranked" if m in ranked else "NOT ranked (shown only)"
        lines.append(f"{m}: passes in {passed} of {total} cells, smallest margin {margin:.3g} CI half-widths: {verdict_text}")
    return lines


# ----------------------------------------------------------------------------- renderings
def _markdown(c: _Content, study_dir: Path) -> str:
    p = c.paragraphs
    out = [f"# Study {c.meta['name']}", ""]
    if c.meta.get("description"):
        out += [c.meta["description"], ""]
    out += [f"**{c.status}**", ""]
    for title, lines, table in c.verdicts:
        out += [f"## {title}", ""] + [f"- {line}" for line in lines] + [""] + [table.markdown(level=0)]
    out += c.key + ([""] if c.key else [])
    if c.figures:
        out += ["## Figures", ""]
        for caption, path in c.figures:
            out += [f"![{caption}]({path.relative_to(study_dir).as_posix()})", "", f"*{caption}.*", ""]
    out += ["## Details", ""] + p["setup"] + [""] + [t.markdown() for t in c.tables]
    out += ["## Flags", ""] + [f"- {f}" for f in p["flags"]] + [""]
    out += ["## Which metrics rank", "", p["sanity"][0], ""] + [f"- {line}" for line in p["sanity"][1:]] + [""]
    out += ["## Significance", ""] + p["significance"] + [""]
    out += ["## Metrics", ""] + [f"- {line}" for line in p["legend"]] + [""]
    if p["failed"]:
        out += ["## Failed cells", ""] + [f"- {line}" for line in p["failed"]] + [""]
    out += [f"*Written {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC.*", ""]
    return "\n".join(out)


def _html(c: _Content) -> str:
    esc = html.escape
    p = c.paragraphs
    body = [f"<h1>Study {esc(c.meta['name'])}</h1>"]
    if c.meta.get("description"):
        body.append(f"<p>{esc(c.meta['description'])}</p>")
    body.append(f"<p><strong>{esc(c.status)}</strong></p>")
    for title, lines, table in c.verdicts:
        body += [f"<h2>{esc(title)}</h2>", "<div class='verdict'>" + "".join(f"<p>{esc(x)}</p>" for x in lines) + "</div>"]
        body.append(table.html(level=0))
    body += [f"<p class='note'>{esc(x)}</p>" for x in c.key]
    if c.figures:
        body += ["<h2>Figures</h2>"] + [html_figure(path, caption) for caption, path in c.figures]
    body += ["<h2>Details</h2>"] + [f"<p>{esc(x)}</p>" for x in p["setup"]] + [t.html() for t in c.tables]
    body += ["<h2>Flags</h2>", html_list(p["flags"])]
    body += ["<h2>Which metrics rank</h2>", f"<p>{esc(p['sanity'][0])}</p>", html_list(p["sanity"][1:])]
    body += ["<h2>Significance</h2>"] + [f"<p>{esc(x)}</p>" for x in p["significance"]]
    body += ["<h2>Metrics</h2>", html_list(p["legend"])]
    if p["failed"]:
        body += ["<h2>Failed cells</h2>", html_list(p["failed"])]
    body.append(f"<p class='meta'>Written {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC.</p>")
    return html_page(f"Study {c.meta['name']}", body)


__all__ = ["ReportPaths", "format_ci", "load_study", "metrics_table", "significance_table", "write_report"]
