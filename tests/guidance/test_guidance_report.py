"""The optimisation report: ceilings in closed form, the verdict, labels, plurals, bands only with seeds."""

from __future__ import annotations

import math

import numpy as np
import pytest

from flowstudy.guidance.ceilings import topk_cosine_bound
from flowstudy.guidance.report import OptimizationRun, curves, prior_name, render_report, short_objective
from flowstudy.reporting import FIGURE_WIDTH_PX, png_size


def test_topk_bound_is_the_cosine_to_the_projection_on_the_top_principal_directions():
    d = 8
    e = np.eye(d)
    # rows +-3 e0, +-2 e1, +-1 e2: mean 0, principal directions e0, e1, e2 in that order
    train = np.stack([3 * e[0], -3 * e[0], 2 * e[1], -2 * e[1], e[2], -e[2]])
    target = 0.6 * e[0] + 0.3 * e[1] + 0.5 * e[5]
    bounds = topk_cosine_bound(train, target, ks=(1, 2, 3, 4))
    norm = np.linalg.norm(target)
    assert bounds[1] == pytest.approx(0.6 / norm)  # projection 0.6 e0: cos = 0.6 / |t|
    assert bounds[2] == pytest.approx(math.hypot(0.6, 0.3) / norm)
    assert bounds[3] == pytest.approx(bounds[2])  # e2 holds none of the target
    assert 4 not in bounds  # beyond the rank of the centred rows
    with pytest.raises(ValueError, match="target"):
        topk_cosine_bound(train, target[:4])


def test_names_carry_no_hashes():
    assert prior_name("studies/runs/quick/runs/mlp_s0_d9521dc7") == "mlp_s0"
    assert prior_name("gaussian:builtin:sonar-gsm8k-1k") == "Gaussian fit"
    assert short_objective("cosine:builtin:sonar-gsm8k-1k:val:17") == "cosine val:17"


def _runs(tmp_path, seeds, methods=("guided", "prior"), objectives=("cosine:x:val:1",), lift=0.2):
    rng = np.random.default_rng(0)
    out = []
    for method in methods:
        for objective in objectives:
            for seed in seeds:
                y = np.concatenate([np.linspace(0.1, 0.3, 4), 0.3 + (lift if method == "guided" else 0.0) * np.linspace(0, 1, 6)])
                y = y + (0.01 * rng.standard_normal(10) if method != "guided" or seed else 0)
                config = {"prior": "runs/mlp_s0_d9521dc7", "objective": objective, "method": method, "seed": seed, "budget": 10, "n_init": 4}
                out.append(OptimizationRun(tmp_path / f"{method}{seed}{objective}", config, np.zeros((10, 0)), y, np.zeros(10, int)))
    return out


def test_one_seed_one_objective_report_reads_right(tmp_path):
    paths = render_report(_runs(tmp_path, [0]), tmp_path, realism=False)
    md = paths.markdown.read_text()
    assert "1 objective, 2 methods, prior mlp_s0, 1 seed;" in md and "d9521dc7" not in md
    # one seed, one objective: no interval, no paired test: the winner is not named
    assert "No clear winner after 10 evaluations: guided leads" in md
    assert png_size(paths.figure)[0] == FIGURE_WIDTH_PX
    assert md.index("## Leaderboard") < md.index("best_so_far.png") < md.index("## Details")


def test_winner_named_when_its_interval_clears_the_runner_up(tmp_path):
    runs = _runs(tmp_path, [0, 1, 2], objectives=("cosine:x:val:1", "cosine:x:val:2"))
    md = render_report(runs, tmp_path, realism=False).markdown.read_text()
    assert "Winner after 10 evaluations: guided (0.50" in md and "clear of the runner-up's, prior (0.31" in md
    assert "| guided | **0.50" in md  # bold in the leaderboard
    data = curves(runs, 10)
    assert {key[1]: n for key, (*_, n) in data.items()} == {"guided": 3, "prior": 3}
    mean, lo, hi, _ = data[("runs/mlp_s0_d9521dc7", "prior")]
    assert (lo < mean).any() and (hi > mean).any()  # a band where seeds differ
    one = curves(_runs(tmp_path, [0]), 10)[("runs/mlp_s0_d9521dc7", "prior")]
    assert np.array_equal(one[1], one[0]) and one[3] == 1  # one seed: no band
