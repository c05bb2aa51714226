"""The study report: tables over seeds with baselines, flags, significance, figures.

``write_report(study_dir)`` writes ``report.md`` (figures beside it in ``figures/``) and a
self-contained ``report.html`` (figures embedded as base64 PNG data URIs, so it opens
anywhere). Entries are mean [95 % CI] over seeds; the best configuration of each column is
marked (directions and tests: :mod:`flowstudy.study.summary`) on the metrics that pass the
baseline sanity check on this data (the others are shown, marked "not ranked"); baseline rows
(Gaussian fit, noise, training copies, real held-out data) were evaluated by the same code on
the same held-out splits; configurations whose mean does not beat the Gaussian fit (by NLL when
the study computes it, else on the ranked metrics) are flagged.
"""

from __future__ import annotations

import base64
import html
import json
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

from flowstudy.errors import ConfigError
from flowstudy.metrics.table import FLAGGED_METRICS
from flowstudy.study.summary import (
    BASELINE_ROWS,
    COST_METRICS,
    DIRECTIONS,
    QUALITY_METRICS,
    Comparison,
    GroupSummary,
    best_labels,
    compare_to_reference,
    find_group,
    gaussian_flags,
    ranked_metrics,
    sanity_summary,
    summarize_baselines,
    summarize_groups,
)

# ----------------------------------------------------------------------------- tables
@dataclass
class Table:
    """Rendered text per cell plus which cells are the column's best."""

    title: str
    headers: list[str]
    rows: list[list[str]]
    best: set[tuple[int, int]] = field(default_factory=set)
    separator_before: int | None = None  # index of the first baseline row

    def markdown(self) -> str:
        lines = [f"### {self.title}", "", "| " + " | ".join(self.headers) + " |", "|" + "---|" * len(self.headers)]
        for i, row in enumerate(self.rows):
            cells = [f"**{c}**" if (i, j) in self.best and c else c for j, c in enumerate(row)]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines) + "\n"

    def html(self) -> str:
        head = "".join(f"<th>{html.escape(h)}</th>" for h in self.headers)
        body = []
        for i, row in enumerate(self.rows):
            cls = ' class="baseline"' if self.separator_before is not None and i >= self.separator_before else ""
            cells = "".join(
                f'<td class="best">{html.escape(c)}</td>' if (i, j) in self.best else f"<td>{html.escape(c)}</td>"
                for j, c in enumerate(row)
            )
            body.append(f"<tr{cls}>{cells}</tr>")
        return f"<h3>{html.escape(self.title)}</h3>\n<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>\n"


def fmt(v: float) -> str:
    return "–" if v is None or not math.isfinite(v) else f"{v:.4g}"


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
) -> Table:
    """Configurations (mean [95 % CI] over seeds, best per column marked), then baseline rows.

    ranked: the metrics that may be marked best (default: all); the others' headers say "not ranked".
    """
    metrics = [m for m in metrics if any(m in g.stats for g in groups)]
    unranked = [] if ranked is None else [m for m in metrics if m not in ranked]
    headers = ["configuration", "seeds"] + [f"{m} (not ranked)" if m in unranked else m for m in metrics]
    headers += ["beats Gaussian (seeds)"] if gaussian_check else []
    rows, best = [], set()
    bests = {m: (set() if m in unranked else best_labels(groups, m)) for m in metrics}
    gaussian = (baselines or {}).get("gaussian")
    for i, g in enumerate(groups):
        flagged = gaussian_flags(g, gaussian, ranked) if gaussian_check else []
        label = g.label + (" ⚠" if flagged else "")
        row = [label, str(len(g.seeds))] + [format_ci(g.stats[m]) if m in g.stats else "–" for m in metrics]
        if gaussian_check:
            won, total = g.beats_gaussian
            row.append(f"{won}/{total}" + (f" (mean not better on {', '.join(flagged)})" if flagged else ""))
        rows.append(row)
        best |= {(i, 2 + j) for j, m in enumerate(metrics) if g.label in bests[m]}
    separator = len(rows)
    for row_name in BASELINE_ROWS:
        b = (baselines or {}).get(row_name)
        if b is None or not any(m in b.stats for m in metrics):
            continue
        row = [f"baseline: {b.label}", str(len(b.seeds))] + [format_ci(b.stats[m]) if m in b.stats else "–" for m in metrics]
        rows.append(row + ([""] if gaussian_check else []))
    return Table(title, headers, rows, best, separator if separator < len(rows) else None)


def significance_table(comparisons: list[Comparison], reference: str, alpha: float = 0.05) -> Table:
    """Rows: configurations; columns: metrics; entries: Δ badness and Holm-adjusted p (* below alpha)."""
    metrics = list(dict.fromkeys(c.metric for c in comparisons))
    groups = list(dict.fromkeys(c.group for c in comparisons))
    lookup = {(c.group, c.metric): c for c in comparisons}
    rows, best = [], set()
    for i, g in enumerate(groups):
        row = [g]
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
    title = f"Against the reference '{reference}': {', '.join(tests)}, Holm-adjusted p"
    return Table(title, ["configuration"] + metrics, rows, best)


# ----------------------------------------------------------------------------- report
@dataclass(frozen=True)
class ReportPaths:
    """Files written by :func:`write_report`: report.md, report.html and the figures (PNG)."""

    markdown: Path
    html: Path
    figures: list[Path]


def load_study(study_dir: str | Path) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
    """(study.json, done results in cell order, failures) of a study folder."""
    from flowstudy.study.store import STORE_NAME, ResultStore

    study_dir = Path(study_dir)
    meta_path = study_dir / "study.json"
    if not meta_path.exists():
        raise ConfigError(f"{study_dir}: not a study folder (no study.json); run `flowstudy study SPEC.toml` first")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    ids = [c["id"] for c in meta["cells"]]
    store_path = study_dir / STORE_NAME
    if not store_path.exists():
        return meta, [], []
    store = ResultStore(store_path)
    return meta, store.results(ids), store.failures(ids)


def write_report(study_dir: str | Path, reference: str | None = None) -> ReportPaths:
    """Write ``report.md``, ``report.html`` and ``figures/*.png`` into ``study_dir``."""
    study_dir = Path(study_dir)
    meta, results, failures = load_study(study_dir)
    if not results:
        raise ConfigError(f"{study_dir}: no finished cells to report on")
    reference = reference or meta.get("reference")
    group_values = {c["group"]: c.get("values", c["axes"]) for c in meta["cells"]}
    all_metrics = QUALITY_METRICS + COST_METRICS
    groups = summarize_groups(results, all_metrics, group_values)
    baselines_by_data = summarize_baselines(results, QUALITY_METRICS)
    ranked = ranked_metrics(results, QUALITY_METRICS)
    tables = _tables(groups, baselines_by_data, ranked)
    comparisons = compare_to_reference(groups, reference, QUALITY_METRICS if ranked is None else ranked) if reference else []
    if comparisons:
        tables.append(significance_table(comparisons, find_group(groups, reference).label))
    figures = _figures(study_dir, meta, results, groups, baselines_by_data)
    md_path, html_path = study_dir / "report.md", study_dir / "report.html"
    sections = _sections(meta, results, failures, groups, baselines_by_data, reference, ranked)
    if reference and not comparisons:
        sections["significance"].append("No test was possible: it needs at least two seeds shared with the reference.")
    from flowstudy.io import atomic_write_text

    atomic_write_text(md_path, _markdown(meta, sections, tables, figures, study_dir))
    atomic_write_text(html_path, _html(meta, sections, tables, figures))
    return ReportPaths(md_path, html_path, [path for _, path in figures])


def _tables(groups: list[GroupSummary], baselines_by_data: dict[tuple, dict[str, GroupSummary]], ranked: list[str]) -> list[Table]:
    tables = []
    several = len(baselines_by_data) > 1
    for key, baselines in baselines_by_data.items():
        members = [g for g in groups if g.data_key == key]
        suffix = f" — data {key[0]}, {key[1]} samples" if several else ""
        title = f"Sample quality (mean [95 % CI] over seeds){suffix}"
        tables.append(metrics_table(title, members, QUALITY_METRICS, baselines, ranked=ranked))
    tables.append(metrics_table("Training and sampling cost", groups, COST_METRICS, gaussian_check=False))
    return tables


def _figures(study_dir, meta, results, groups, baselines_by_data) -> list[tuple[str, Path]]:
    from flowstudy.study import plots

    fig_dir = study_dir / "figures"
    baselines = next(iter(baselines_by_data.values()), {})
    figures: list[tuple[str, Path | None]] = []
    for axis in meta["axes"]:
        path = plots.metric_bars(groups, baselines, axis, fig_dir / f"bars_{_file_slug(axis)}.png")
        figures.append((f"Metrics along '{axis}'", path))
    figures.append(("Training curves", plots.training_curves(study_dir, results, fig_dir / "training_curves.png")))
    figures.append(("Held-out vs generated (PCA)", plots.pca_panels(study_dir, results, fig_dir / "pca.png")))
    if any(a in meta["axes"] for a in ("sample_steps", "sample_solver")):
        figures.append(("Quality versus NFE", plots.quality_vs_nfe(groups, baselines, fig_dir / "quality_vs_nfe.png")))
    return [(title, path) for title, path in figures if path is not None]


def _file_slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text)


def _sections(meta, results, failures, groups, baselines_by_data, reference, ranked) -> dict[str, list[str]]:
    """Plain-text paragraphs shared by the markdown and HTML renderings."""
    ev = meta.get("evaluation", {})
    n_cells = len(meta["cells"])
    overview = [
        f"{len(results)} of {n_cells} cells done, {len(failures)} failed; {len(groups)} configurations "
        f"× seeds {meta.get('seeds')}.",
        f"Sampling: {ev.get('n_samples')} samples per cell, solver {ev.get('solver')} with {ev.get('steps')} steps "
        f"(unless a sampling axis says otherwise). Evaluation: eval_seed {ev.get('eval_seed')}, "
        f"{ev.get('n_splits')} held-out half-splits ({ev.get('n_dist_splits')} for distribution metrics); every cell "
        "is compared with the full training set of its data and the same held-out rows, in the space "
        "standardised with the full training set's statistics.",
        "Entries are mean [95 % Student-t CI] over seeds; bold marks the best configuration of each column.",
    ]
    legend = [f"{m}: {DIRECTIONS[m][1]}" for m in QUALITY_METRICS + COST_METRICS if m in DIRECTIONS]
    flags = []
    for key, baselines in baselines_by_data.items():
        for g in groups:
            if g.data_key != key:
                continue
            bad = gaussian_flags(g, baselines.get("gaussian"), ranked)
            if bad:
                flags.append(f"{g.label}: mean does NOT beat the Gaussian fit on {', '.join(bad)} (⚠ in the table)")
    if not flags:
        decided = "held-out NLL" if any("nll" in g.stats for g in groups) else " and ".join(ranked if ranked is not None else FLAGGED_METRICS)
        flags = [f"Every configuration's mean beats the Gaussian fit on {decided}."]
    sanity = _sanity_lines(results, ranked)
    significance = []
    if reference:
        significance.append(
            f"Reference: {reference}. Δ is the mean over seeds of the difference in distance from the ideal "
            "(negative: nearer the ideal than the reference); * marks Holm-adjusted p < 0.05 (paired t-test below "
            "6 seeds, Wilcoxon signed-rank from 6)."
        )
    else:
        significance.append("No reference configuration named (pass --reference NAME or set [study] reference).")
    failed = [f"{f['id']}: {f['error']} (attempts: {f['attempts']})" for f in failures]
    return {"overview": overview, "legend": legend, "flags": flags, "sanity": sanity, "significance": significance, "failed": failed}


def _sanity_lines(results, ranked) -> list[str]:
    """Which metrics order real held-out < Gaussian fit < noise in every cell, with the smallest margin."""
    summary = sanity_summary(results, QUALITY_METRICS)
    if not summary:
        return ["The cells record no sanity check (evaluated before it existed): every metric ranks."]
    lines = [
        "A metric ranks configurations only if, in every cell, it puts real held-out rows nearer its ideal than "
        "the Gaussian fit, and the Gaussian fit nearer than noise, each by at least 2 CI half-widths (paired over "
        "held-out splits; novelty must also give training copies ≈ 0). Held-out NLL, when computed, always ranks."
    ]
    for m, (passed, total, margin) in summary.items():
        verdict = "ranked" if m in ranked else "NOT ranked (shown only)"
        lines.append(f"{m}: passes in {passed} of {total} cells, smallest margin {margin:.3g} CI half-widths: {verdict}")
    return lines


def _markdown(meta, sections, tables, figures, study_dir: Path) -> str:
    out = [f"# Study {meta['name']}", ""]
    if meta.get("description"):
        out += [meta["description"], ""]
    out += [f"_Written {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC._", ""]
    out += sections["overview"] + [""]
    out += ["## Results", ""] + [t.markdown() for t in tables]
    out += ["## Flags", ""] + [f"- {f}" for f in sections["flags"]] + [""]
    out += ["## Which metrics rank", ""] + [sections["sanity"][0], ""] + [f"- {line}" for line in sections["sanity"][1:]] + [""]
    out += ["## Significance", ""] + sections["significance"] + [""]
    out += ["## Metrics", ""] + [f"- {line}" for line in sections["legend"]] + [""]
    if figures:
        out += ["## Figures", ""]
        for title, path in figures:
            out += [f"### {title}", "", f"![{title}]({path.relative_to(study_dir).as_posix()})", ""]
    if sections["failed"]:
        out += ["## Failed cells", ""] + [f"- {line}" for line in sections["failed"]] + [""]
    return "\n".join(out)


_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1400px; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
td.best { font-weight: bold; background: #e6f4e6; }
tr.baseline td { color: #555; background: #f6f6f6; }
img { max-width: 100%; border: 1px solid #eee; }
"""


def _html(meta, sections, tables, figures) -> str:
    esc = html.escape
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>Study {esc(meta['name'])}</title>"]
    parts += [f"<style>{_CSS}</style></head><body>", f"<h1>Study {esc(meta['name'])}</h1>"]
    if meta.get("description"):
        parts.append(f"<p>{esc(meta['description'])}</p>")
    parts.append(f"<p><em>Written {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC.</em></p>")
    parts += [f"<p>{esc(p)}</p>" for p in sections["overview"]]
    parts += ["<h2>Results</h2>"] + [t.html() for t in tables]
    parts += ["<h2>Flags</h2><ul>"] + [f"<li>{esc(f)}</li>" for f in sections["flags"]] + ["</ul>"]
    parts += ["<h2>Which metrics rank</h2>", f"<p>{esc(sections['sanity'][0])}</p><ul>"]
    parts += [f"<li>{esc(line)}</li>" for line in sections["sanity"][1:]] + ["</ul>"]
    parts += ["<h2>Significance</h2>"] + [f"<p>{esc(p)}</p>" for p in sections["significance"]]
    parts += ["<h2>Metrics</h2><ul>"] + [f"<li>{esc(line)}</li>" for line in sections["legend"]] + ["</ul>"]
    if figures:
        parts.append("<h2>Figures</h2>")
        for title, path in figures:
            data = base64.b64encode(path.read_bytes()).decode("ascii")
            parts.append(f"<h3>{esc(title)}</h3><img alt='{esc(title)}' src='data:image/png;base64,{data}'>")
    if sections["failed"]:
        parts += ["<h2>Failed cells</h2><ul>"] + [f"<li>{esc(line)}</li>" for line in sections["failed"]] + ["</ul>"]
    parts.append("</body></html>\n")
    return "\n".join(parts)


__all__ = ["ReportPaths", "Table", "format_ci", "load_study", "metrics_table", "significance_table", "write_report"]
