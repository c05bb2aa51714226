"""Figures made for reading: drawn at the width shown, one panel per ranked metric, short labels,
legends outside the data, no two series alike, plain tick labels."""

from __future__ import annotations

import numpy as np

from flowstudy.reporting import FIGURE_WIDTH_PX, png_size, save
from flowstudy.study import plots
from flowstudy.study.labels import short_labels
from flowstudy.study.leaderboard import verdict
from flowstudy.study.summary import header, summarize_baselines, summarize_groups

METRICS = ("nll", "nll_gap", "fidelity", "novelty", "c2st_auc", "c2st_knn_auc", "coverage")
RANKED = ["nll", "nll_gap", "fidelity", "novelty", "c2st_knn_auc", "coverage"]  # c2st_auc failed its sanity check
N_CONFIGS = 23  # more than the 10 colours


def _results():
    rng = np.random.default_rng(0)
    out = []
    for k in range(N_CONFIGS):
        values = {"model.mixer": ["mamba", "attention", "token-mlp"][k % 3], "lr": [5e-4, 1e-3, 2e-3, 4e-3, 8e-3, 1e-2, 2e-2, 3e-2][k // 3]}
        group = f"raw/config/string/{k}/with=many[\"parts\"]"
        for seed in range(3):
            r = {"id": f"c{k}s{seed}", "group": group, "run": f"c{k}s{seed}", "seed": seed, "data": "d", "n_samples": 10, "eval_seed": 0}
            r.update({m: 1.0 + 0.01 * k + 0.01 * rng.standard_normal() for m in METRICS})
            r.update({"nll": -4.4 + r["nll_gap"], "baseline_gaussian_nll": -4.4, "baseline_gaussian_fidelity": 1.15})
            r.update({"baseline_heldout_fidelity": 1.0})
            out.append((r, values))
    return out


def _groups():
    pairs = _results()
    values = {r["group"]: v for r, v in pairs}
    results = [r for r, _ in pairs]
    groups = summarize_groups(results, METRICS, values)
    return results, groups, summarize_baselines(results, METRICS)[("d", 10, 0)]


def _texts(fig) -> list[str]:
    return [t.get_text() for ax in fig.axes for t in ax.get_yticklabels() + ax.get_xticklabels() if t.get_text()]


def test_metric_panels_show_exactly_the_ranked_metrics_with_short_labels(tmp_path):
    results, groups, baselines = _groups()
    v = verdict(groups, baselines["gaussian"], RANKED)
    fig = plots.draw_metric_panels(v.order, baselines, v.metrics, short_labels(groups))
    titles = [ax.get_title() for ax in fig.axes if ax.get_visible()]
    assert titles == [header(m) for m in ["nll_gap", "fidelity", "novelty", "c2st_knn_auc", "coverage"]]
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert len(labels) == N_CONFIGS and all(len(t) <= 40 for t in labels) and "raw/config" not in " ".join(labels)
    assert all("×10" not in t and "e+" not in t and "e-" not in t for t in _texts(fig))  # plain tick labels
    # values cluster near 1: the axes fit them instead of starting at 0
    fidelity = fig.axes[1]
    assert fidelity.get_xlim()[0] > 0.5
    # the legend sits outside every panel
    fig.draw_without_rendering()  # runs the constrained layout
    legend = fig.legends[0].get_window_extent()
    assert not any(legend.overlaps(ax.get_window_extent()) for ax in fig.axes if ax.get_visible())
    path = save(fig, tmp_path / "m.png")
    assert png_size(path)[0] == FIGURE_WIDTH_PX


def test_training_curves_give_every_configuration_its_own_look(tmp_path):
    curves = {f"cfg{k}": [[(10, 1.0 + k), (20, 0.9 + k)], [(10, 1.1 + k), (20, 0.95 + k)]] for k in range(N_CONFIGS)}
    fig = plots.draw_training_curves(curves, {f"cfg{k}": f"lr {k}" for k in range(N_CONFIGS)})
    looks = {}
    for line in fig.axes[0].get_lines():
        looks.setdefault((line.get_color(), line.get_linestyle()), set()).add(round(line.get_ydata()[0] - 1.0))
    # 46 lines (2 seeds each), 23 looks, each look exactly one configuration's
    assert len(looks) == N_CONFIGS and all(len(v) == 1 for v in looks.values())
    fig.draw_without_rendering()  # runs the constrained layout
    legend = fig.legends[0].get_window_extent()
    assert not legend.overlaps(fig.axes[0].get_window_extent())
    assert png_size(save(fig, tmp_path / "t.png")) [0] == FIGURE_WIDTH_PX


def test_pca_draws_held_out_rows_over_generated_ones_beside_the_gaussian_fit():
    rng = np.random.default_rng(0)
    fig = plots.draw_pca(rng.standard_normal((50, 2)), {"mlp (seed 0)": rng.standard_normal((80, 2)),
                                                       "Gaussian fit (baseline)": rng.standard_normal((80, 2))})
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in visible] == ["mlp (seed 0)", "Gaussian fit (baseline)"]
    for ax in visible:
        generated, heldout = ax.collections
        assert len(heldout.get_offsets()) == 50 and heldout.get_zorder() > generated.get_zorder()
