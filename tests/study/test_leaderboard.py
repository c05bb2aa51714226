"""The verdict: leaderboard order, wins against the Gaussian fit, the winner named only when separated."""

from __future__ import annotations

from flowstudy.study.labels import short_labels
from flowstudy.study.leaderboard import leaderboard_metrics, leaderboard_table, verdict, verdict_lines, wins_text
from flowstudy.study.report import format_ci
from flowstudy.study.summary import summarize_baselines, summarize_groups

METRICS = ("nll", "nll_gap", "fidelity", "coverage")
GAUSSIAN_NLL = -4.40


def _results(gaps: dict[str, list[float]], fidelity: dict[str, list[float]]) -> list[dict]:
    out = []
    for arch, per_seed in gaps.items():
        for seed, gap in enumerate(per_seed):
            out.append({
                "id": f"{arch}_s{seed}", "group": arch, "seed": seed, "arch": arch, "data": "d", "n_samples": 10, "eval_seed": 0,
                "nll": GAUSSIAN_NLL + gap, "nll_gap": gap, "fidelity": fidelity[arch][seed], "coverage": 0.8,
                "baseline_gaussian_nll": GAUSSIAN_NLL, "baseline_gaussian_fidelity": 1.15, "baseline_gaussian_coverage": 0.4,
                "baseline_heldout_fidelity": 1.0, "baseline_heldout_coverage": 0.96,
            })
    return out


def _verdict(results):
    groups = summarize_groups(results, METRICS, {g: {"arch": g} for g in {r["group"] for r in results}})
    baselines = summarize_baselines(results, METRICS)[("d", 10, 0)]
    ranked = ["nll", "nll_gap", "fidelity", "coverage"]
    return groups, baselines, verdict(groups, baselines["gaussian"], ranked)


def test_nll_gap_first_and_rows_ordered_by_it():
    results = _results(
        {"mlp": [-0.030, -0.031, -0.029], "dit": [-0.010, -0.009, -0.011], "mamba": [0.18, 0.17, 0.19]},
        {"mlp": [1.08, 1.09, 1.07], "dit": [1.10, 1.09, 1.11], "mamba": [1.03, 1.02, 1.04]},
    )
    groups, baselines, v = _verdict(results)
    assert v.metrics == ["nll_gap", "fidelity", "coverage"]  # the raw NLL is shown through its gap
    assert [g.label for g in v.order] == ["mlp", "dit", "mamba"]
    # mlp's gap interval (-0.030 +- 4.30 * 0.001 / sqrt 3 = +-0.0025) is clear of dit's: a named winner
    assert v.winners["nll_gap"] == ("mlp", "dit", True)
    # wins: coverage 0.8 beats the fit's 0.4 everywhere; mamba's gap is above 0; fidelity all nearer 1 than 1.15
    assert v.wins == {"mlp": (3, 3), "dit": (3, 3), "mamba": (2, 3)}
    lines = verdict_lines(v, short_labels(groups), format_ci)
    assert lines[0].startswith("Winner by held-out NLL: mlp, gap -0.03 [") and "runner-up, dit" in lines[0]
    assert lines[-1] == "2 of 3 configurations beat the Gaussian fit on all 3 ranked metrics."
    table = leaderboard_table(v, short_labels(groups), baselines, format_ci)
    assert table.headers == ["configuration", "seeds", "beats Gaussian fit on", "NLL gap ↓", "fidelity →1", "coverage ↑"]
    assert (0, 3) in table.best and (2, 4) in table.best  # mlp's gap; mamba's fidelity 1.03 [1.005, 1.055] clear of mlp's
    assert [r[2] for r in table.rows[:3]] == ["all 3", "all 3", "2 of 3"]
    assert table.rows[3][:4] == ["Gaussian fit (baseline)", "3", "", "0"]


def test_no_winner_is_named_when_intervals_overlap_or_with_one_seed():
    results = _results({"a": [-0.02, -0.03, -0.01], "b": [-0.019, -0.029, -0.009]}, {"a": [1.1] * 3, "b": [1.1] * 3})
    groups, _, v = _verdict(results)
    assert v.winners["nll_gap"] == ("a", "b", False)
    assert verdict_lines(v, {}, format_ci)[0].startswith("No single winner by held-out NLL: the best, a (")
    one_seed = [r for r in results if r["seed"] == 0]
    _, _, v1 = _verdict(one_seed)
    assert v1.winners["nll_gap"] == ("b", "a", False) or v1.winners["nll_gap"] == ("a", "b", False)


def test_studies_before_the_sanity_check_show_the_legacy_metrics():
    results = _results({"a": [0.0, 0.0, 0.0]}, {"a": [1.1] * 3})
    groups = summarize_groups([{k: v for k, v in r.items() if "nll" not in k} for r in results], METRICS)
    assert leaderboard_metrics(groups, None) == ["fidelity", "coverage"]


def test_wins_text():
    assert [wins_text(3, 3), wins_text(2, 3), wins_text(0, 3), wins_text(0, 0)] == ["all 3", "2 of 3", "none of 3", "–"]


def test_novelty_counts_against_the_gaussian_fit_as_each_cell_does():
    """Novelty 1.10-1.14 against the fit's 1.28: nearer 1 (|log x|), a win, though both are above 1,
    where the ranking's distance ties them; never bold, since above 1 means off the data."""
    from flowstudy.study.summary import gaussian_wins, separated_best

    results = _results({"a": [0.0, 0.0, 0.0], "b": [0.0, 0.0, 0.0]}, {"a": [1.1] * 3, "b": [1.1] * 3})
    for r in results:
        r["novelty"] = (1.10 if r["group"] == "a" else 1.25) + 0.02 * r["seed"]
        r["baseline_gaussian_novelty"] = 1.28
    groups = summarize_groups(results, ("novelty",))
    gaussian = summarize_baselines(results, ("novelty",))[("d", 10, 0)]["gaussian"]
    assert gaussian_wins(groups[0], gaussian, ["novelty"]) == (1, 1)  # [1.07, 1.17]: |log| below |log 1.28|
    assert gaussian_wins(groups[1], gaussian, ["novelty"]) == (0, 1)  # [1.22, 1.32] reaches past 1.28
    assert separated_best(groups, "novelty")[2] is False
