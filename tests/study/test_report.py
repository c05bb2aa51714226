"""Report: intervals and best markers on hand-made results, significance, files and embedded figures."""

from __future__ import annotations

import base64
import math
import re

import numpy as np
import pytest
from scipy import stats

from flowstudy.errors import ConfigError
from flowstudy.reporting import FIGURE_WIDTH_PX, png_size
from flowstudy.study.report import format_ci, metrics_table, write_report
from flowstudy.study.summary import (
    badness_range,
    best_labels,
    header,
    separated_best,
    compare_to_reference,
    find_group,
    gaussian_flags,
    ranked_metrics,
    summarize_baselines,
    summarize_groups,
)

METRICS = ("fidelity", "novelty", "c2st_auc", "coverage")

# Three configurations x three seeds; per seed: fidelity, novelty, c2st_auc, coverage.
HAND = {
    "mlp": [(1.1, 0.8, 0.60, 0.50), (1.2, 0.9, 0.62, 0.55), (1.3, 0.7, 0.58, 0.60)],
    "dit": [(0.9, 1.3, 0.70, 0.40), (0.95, 1.2, 0.72, 0.45), (1.0, 1.1, 0.74, 0.50)],
    "unet": [(1.6, 0.95, 0.55, 0.70), (1.5, 0.90, 0.56, 0.75), (1.7, 1.00, 0.57, 0.80)],
}
GAUSSIAN = {"fidelity": 1.4, "novelty": 1.1, "c2st_auc": 0.65, "coverage": 0.3}


def _results() -> list[dict]:
    out = []
    for arch, seeds in HAND.items():
        for seed, values in enumerate(seeds):
            r = {"id": f"{arch}_s{seed}", "group": arch, "seed": seed, "arch": arch, "data": "d", "n_samples": 10, "eval_seed": 0}
            r.update(dict(zip(METRICS, values)))
            r.update({f"baseline_gaussian_{m}": v for m, v in GAUSSIAN.items()})
            r.update({f"baseline_heldout_{m}": 1.0 for m in METRICS})
            r["beats_gaussian"] = arch != "unet"
            out.append(r)
    return out


def test_mean_and_t_interval_over_seeds():
    groups = summarize_groups(_results(), METRICS)
    assert [g.label for g in groups] == ["mlp", "dit", "unet"]
    fid = groups[0].stats["fidelity"]  # 1.1, 1.2, 1.3: mean 1.2, s = 0.1
    half = stats.t.ppf(0.975, 2) * 0.1 / math.sqrt(3)  # 4.3027 * 0.1 / sqrt(3) = 0.2484
    assert fid.mean == pytest.approx(1.2) and fid.lo == pytest.approx(1.2 - half) and fid.hi == pytest.approx(1.2 + half)
    assert format_ci(fid) == f"1.2 [{1.2 - half:.4g}, {1.2 + half:.4g}]" == "1.2 [0.9516, 1.448]"
    assert groups[0].per_seed["novelty"] == {0: 0.8, 1: 0.9, 2: 0.7}
    assert groups[2].beats_gaussian == (0, 3) and groups[0].beats_gaussian == (3, 3)


def test_best_markers_follow_each_metrics_direction():
    groups = summarize_groups(_results(), METRICS)
    # fidelity: |log mean| -> dit (0.95) beats mlp (1.2) and unet (1.6)
    assert best_labels(groups, "fidelity") == {"dit"}
    # novelty: higher is better up to 1 -> dit (1.2) reaches it; unet (0.95) and mlp (0.8) do not
    assert best_labels(groups, "novelty") == {"dit"}
    # c2st AUC: nearest 0.5 -> unet (0.56); coverage: highest -> unet (0.75)
    assert best_labels(groups, "c2st_auc") == {"unet"} and best_labels(groups, "coverage") == {"unet"}

    baselines = summarize_baselines(_results(), METRICS)[("d", 10, 0)]
    table = metrics_table("quality", groups, METRICS, baselines)
    col = {m: table.headers.index(header(m)) for m in METRICS}
    # bold only where the best's interval clears the runner-up's: with 3 seeds none does here
    # (fidelity: dit [0.826, 1.074] and mlp [0.952, 1.448] both hold the ideal 1; novelty: dit's 1.2
    # is above 1, off the data; c2st: unet's |x - 0.5| reaches 0.085, mlp's starts at 0.050)
    assert table.best == set()
    md = table.markdown().splitlines()
    dit_row = [c.strip() for c in md[5].strip("|").split("|")]  # title, blank, header, rule, mlp, dit
    assert dit_row[0] == "dit ⚠" and dit_row[col["fidelity"]].startswith("0.95 [")
    # baseline rows follow the configurations, without markers
    assert [r[0] for r in table.rows[3:]] == ["baseline: Gaussian fit", "baseline: real held-out"]
    assert table.rows[3][col["fidelity"]] == "1.4"  # constant over seeds: no interval


def test_bold_marks_only_a_best_whose_interval_clears_the_runner_up():
    results = _results()
    for r in results:  # unet's coverage 0.90 +- 0.01: its interval [0.875, 0.925] clears mlp's [0.426, 0.674]
        if r["arch"] == "unet":
            r["coverage"] = 0.90 + 0.01 * (r["seed"] - 1)
    groups = summarize_groups(results, METRICS)
    assert separated_best(groups, "coverage") == ("unet", "mlp", True)
    assert separated_best(groups, "fidelity") == ("dit", "mlp", False)
    table = metrics_table("quality", groups, METRICS, summarize_baselines(results, METRICS)[("d", 10, 0)])
    assert table.best == {(2, table.headers.index(header("coverage")))}
    assert "| **0.9 [" in table.markdown()


def test_badness_range_over_an_interval():
    from flowstudy.metrics.stats import MeanCI

    # |log x| over [0.8, 1.1]: the ideal 1 inside -> nearest 0, farthest |log 0.8| = 0.2231
    assert badness_range("fidelity", MeanCI(0.95, 0.8, 1.1, 0.1, 3)) == pytest.approx((0.0, -math.log(0.8)))
    # coverage 1 - x over [0.6, 0.7]: (0.3, 0.4); one seed: the mean's distance twice
    assert badness_range("coverage", MeanCI(0.65, 0.6, 0.7, 0.05, 3)) == pytest.approx((0.3, 0.4))
    assert badness_range("coverage", MeanCI(0.65, math.nan, math.nan, math.nan, 1)) == pytest.approx((0.35, 0.35))
    # novelty max(1 - x, 0) over [0.9, 1.2]: (0, 0.1)
    assert badness_range("novelty", MeanCI(1.05, 0.9, 1.2, 0.1, 3)) == pytest.approx((0.0, 0.1))


def test_configurations_that_do_not_beat_the_gaussian_are_flagged():
    groups = {g.label: g for g in summarize_groups(_results(), METRICS)}
    gaussian = summarize_baselines(_results(), METRICS)[("d", 10, 0)]["gaussian"]
    assert gaussian_flags(groups["mlp"], gaussian) == []  # 1.2 vs 1.4 and 0.60 vs 0.65: better on both
    assert gaussian_flags(groups["dit"], gaussian) == ["c2st_auc"]  # 0.72 is further from 0.5 than 0.65
    assert gaussian_flags(groups["unet"], gaussian) == ["fidelity"]  # |log 1.6| > |log 1.4|


def _with_sanity(passes: dict[str, int], nll: dict[str, float] | None = None) -> list[dict]:
    out = []
    for r in _results():
        r = {**r, **{f"sanity_{m}": v for m, v in passes.items()}, **{f"sanity_margin_{m}": 3.0 * v for m, v in passes.items()}}
        if nll is not None:
            r.update({"nll": nll[r["arch"]] + 0.01 * r["seed"], "baseline_gaussian_nll": nll["gaussian"]})
        out.append(r)
    return out


def test_only_metrics_that_pass_the_sanity_check_rank():
    results = _with_sanity({"fidelity": 1, "novelty": 1, "c2st_auc": 0, "coverage": 1})
    results[0]["sanity_coverage"] = 0  # one cell fails: coverage does not rank
    ranked = ranked_metrics(results, METRICS)
    assert ranked == ["fidelity", "novelty"] and ranked_metrics(_results(), METRICS) is None
    groups = summarize_groups(results, METRICS)
    table = metrics_table("quality", groups, METRICS, summarize_baselines(results, METRICS)[("d", 10, 0)], ranked=ranked)
    assert "linear C2ST AUC →0.5 (not ranked)" in table.headers and "coverage ↑ (not ranked)" in table.headers
    assert all(table.headers[j] in ("fidelity →1", "novelty ↑ to 1") for _, j in table.best)  # unet's c2st/coverage: no bold
    gaussian = summarize_baselines(results, METRICS)[("d", 10, 0)]["gaussian"]
    assert gaussian_flags(groups[1], gaussian) == ["c2st_auc"]  # dit without a sanity check: the fixed pair
    assert "c2st_auc" not in gaussian_flags(groups[1], gaussian, ranked)  # it does not rank here


def test_nll_decides_the_gaussian_flag_when_the_study_has_it():
    results = _with_sanity({"fidelity": 1}, nll={"mlp": -4.5, "dit": -4.3, "unet": -4.6, "gaussian": -4.4})
    groups = {g.label: g for g in summarize_groups(results, ("nll",) + METRICS)}
    gaussian = summarize_baselines(results, ("nll",) + METRICS)[("d", 10, 0)]["gaussian"]
    assert gaussian_flags(groups["dit"], gaussian, ["fidelity"]) == ["nll"]
    assert gaussian_flags(groups["unet"], gaussian, ["fidelity"]) == []  # worse fidelity, better NLL
    ranked = ranked_metrics(results, ("nll",) + METRICS)
    assert ranked == ["nll", "fidelity"]  # nll ranks without a sanity check; the others record none here
    baselines = summarize_baselines(results, ("nll",) + METRICS)[("d", 10, 0)]
    table = metrics_table("quality", list(groups.values()), ("nll",) + METRICS, baselines, ranked=ranked)
    assert table.headers[2] == "NLL ↓" and (2, 2) in table.best  # unet: lowest NLL, interval clear of mlp's
    assert table.rows[1][0] == "dit ⚠" and table.rows[3][2] == "-4.4"  # flagged by NLL; the Gaussian's NLL row


def test_a_seed_at_zero_is_left_out_of_the_paired_tests_not_an_error():
    results = _results()
    for r in results:
        if r.get("arch") == "dit" and r["seed"] == 1:
            r["fidelity"] = 0.0  # |log 0| = inf: the worst value, which no paired test can take
    groups = summarize_groups(results, METRICS)
    comparisons = {(c.group, c.metric) for c in compare_to_reference(groups, "mlp", ("fidelity", "c2st_auc"))}
    assert comparisons == {("unet", "fidelity"), ("dit", "c2st_auc"), ("unet", "c2st_auc")}


def test_paired_tests_against_the_reference_with_holm():
    groups = summarize_groups(_results(), METRICS)
    comparisons = {(c.group, c.metric): c for c in compare_to_reference(groups, "mlp", ("fidelity", "c2st_auc"))}
    assert set(comparisons) == {("dit", "fidelity"), ("unet", "fidelity"), ("dit", "c2st_auc"), ("unet", "c2st_auc")}
    bad = {arch: [abs(math.log(v[0])) for v in seeds] for arch, seeds in HAND.items()}
    p_dit = stats.ttest_rel(bad["dit"], bad["mlp"]).pvalue
    p_unet = stats.ttest_rel(bad["unet"], bad["mlp"]).pvalue
    c = comparisons[("dit", "fidelity")]
    assert c.test == "paired_t" and c.n == 3
    assert c.pvalue == pytest.approx(p_dit)
    assert c.mean_difference == pytest.approx(np.mean(bad["dit"]) - np.mean(bad["mlp"]))
    # Holm with two comparisons: the smaller p doubles, the larger is max(2 p_min, p_max)
    lo, hi = sorted([p_dit, p_unet])
    adjusted = {lo: min(1, 2 * lo), hi: max(min(1, 2 * lo), min(1, hi))}
    assert c.p_holm == pytest.approx(adjusted[p_dit])
    assert comparisons[("unet", "fidelity")].p_holm == pytest.approx(adjusted[p_unet])


def test_reference_lookup():
    groups = summarize_groups(_results(), METRICS)
    for g, arch in zip(groups, HAND):
        g.values = {"arch": arch}
    assert find_group(groups, "dit").label == "dit"
    assert find_group(groups, "arch=unet").label == "unet"
    with pytest.raises(ConfigError, match="names no configuration; configurations: mlp, dit, unet"):
        find_group(groups, "mamba")


def test_report_files_and_embedded_figures(reference_study):
    _, study_dir, results = reference_study
    paths = write_report(study_dir, reference="icfm")
    md, page = paths.markdown.read_text(), paths.html.read_text()
    names = sorted(p.name for p in paths.figures)
    assert names == ["metrics.png", "pca.png", "training_curves.png"]
    for figure in paths.figures:
        assert png_size(figure)[0] == FIGURE_WIDTH_PX  # drawn at the width it is shown
        assert f"](figures/{figure.name})" in md
    embedded = re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", page)
    assert len(embedded) == len(paths.figures)
    assert sorted(base64.b64decode(e) for e in embedded) == sorted(p.read_bytes() for p in paths.figures)
    assert "figures/" not in page  # self-contained: no links to files beside it
    for text in (md, page):
        assert "Gaussian fit" in text and "real held-out" in text and "otcfm" in text
        assert "Against the reference" in text
    # the verdict comes first: status line, then the leaderboard, before any figure or detail
    assert md.index(f"{len(results)} of {len(results)} cells done, 0 failed, 0 not run") < md.index("## Leaderboard")
    assert md.index("## Leaderboard") < md.index("## Figures") < md.index("## Details")
    assert "## Which metrics rank" in md and "fidelity: passes in" in md
    assert "rows 100" in md and "subset=100" not in md.split("## Details")[0]  # short labels in words


def test_a_folder_of_exported_results_reports_like_the_study(reference_study, tmp_path):
    """results.csv + spec.toml (what docs/results keeps) give the same leaderboard as the study folder."""
    import shutil

    from flowstudy.study.store import export_results

    spec, study_dir, results = reference_study
    export_results(results, tmp_path)
    shutil.copy(spec, tmp_path / "spec.toml")
    (tmp_path / "results.jsonl").unlink()
    exported = write_report(tmp_path, reference="icfm").markdown.read_text()
    original = write_report(study_dir, reference="icfm").markdown.read_text()
    board = lambda text: text[text.index("## Leaderboard"):text.index("## Figures")]  # noqa: E731
    assert board(exported) == board(original)
    assert "6 of 6 cells done, 0 failed, 0 not run" in exported


def test_cells_not_run_are_counted(reference_study, tmp_path):
    """A study file with more cells than the results: the rest are reported as not run."""
    import shutil

    from flowstudy.study.store import export_results

    spec, _, results = reference_study
    export_results(results[:4], tmp_path)
    shutil.copy(spec, tmp_path / "spec.toml")
    md = write_report(tmp_path).markdown.read_text()
    assert "4 of 6 cells done, 0 failed, 2 not run" in md


def test_csv_cells_come_back_typed():
    from flowstudy.study.exported import parse_value

    values = ["", "True", "False", "3", "0.0005", "1e-3", '["noise:0.3"]', "mlp/icfm", "[not json"]
    assert [parse_value(v) for v in values] == [None, True, False, 3, 0.0005, 0.001, ["noise:0.3"], "mlp/icfm", "[not json"]
    assert isinstance(parse_value("3"), int) and isinstance(parse_value("3.0"), float)


def test_a_results_csv_without_an_id_names_the_row(tmp_path):
    (tmp_path / "results.csv").write_text("id,group,seed\na,g,0\n,g,1\n")
    with pytest.raises(ConfigError, match=r"results.csv: row 3 has no id"):
        write_report(tmp_path)
