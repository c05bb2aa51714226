"""The sanity check of every sample metric: real < Gaussian fit < noise by a CI margin, copies' novelty
near 0; only passing metrics rank and flag; NLL decides the verdict when a table has it."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from flowstudy.metrics import EvaluationTable
from flowstudy.metrics.sanity import MARGIN_CAP, MetricSanity, check_metric, passing, sanity_check


def _rows(metric: str, heldout, gaussian, noise, copies=None) -> dict[str, dict[str, np.ndarray]]:
    rows = {"heldout": heldout, "gaussian": gaussian, "noise": noise} | ({"copies": copies} if copies is not None else {})
    return {r: {metric: np.asarray(v, dtype=float)} for r, v in rows.items()}


def test_margin_is_the_paired_difference_over_its_t_interval():
    # MMD (badness = value): d = gaussian - heldout = [1, 2, 3] -> mean 2, sd 1, n 3
    check = check_metric(_rows("mmd", [0, 0, 0], [1, 2, 3], [10, 12, 14]), "mmd")
    half = stats.t.ppf(0.975, 2) * 1.0 / math.sqrt(3)
    assert check.margins[0] == pytest.approx(2.0 / half)  # 0.805: too small
    assert check.margins[1] == pytest.approx(10.0 / half)  # d = [9, 10, 11]
    assert not check.passes and "real held-out rows beat the Gaussian fit by 0.8" in check.reason


def test_a_shared_split_effect_cancels():
    # every row moves with the split (e.g. which rows form the reference half); the ordering holds on each split
    split_effect = np.array([0.0, 0.4, 0.1, 0.3, 0.2])
    check = check_metric(_rows("mmd", split_effect, split_effect + 0.1, split_effect + 0.3), "mmd")
    assert check.passes and check.margins == (MARGIN_CAP, MARGIN_CAP)  # constant differences: no spread
    noisy = check_metric(_rows("mmd", split_effect, split_effect[::-1] + 0.1, split_effect + 0.3), "mmd")
    assert not noisy.passes  # the same values unpaired across splits do not decide


def test_wrong_order_fails_with_its_reason_and_directions_follow_the_metric():
    # coverage: higher is better; here noise covers more than the Gaussian fit
    check = check_metric(_rows("coverage", [0.97, 0.98, 0.96], [0.9, 0.91, 0.9], [0.95, 0.94, 0.96]), "coverage")
    assert check.margins[0] > 2 and check.margins[1] < 0
    assert not check.passes and "the Gaussian fit beats noise" in check.reason
    # density 0 on every split (badness infinite) is infinitely worse, not undefined
    dens = check_metric(_rows("density", [1.0, 1.1, 0.9], [0.5, 0.55, 0.45], [0.0, 0.0, 0.0]), "density")
    assert dens.margins[1] == MARGIN_CAP and dens.passes


def test_novelty_needs_copies_near_zero():
    ok = _rows("novelty", [1, 1, 1.0], [1.3, 1.31, 1.29], [1.6, 1.62, 1.58], copies=[0, 0, 0])
    assert check_metric(ok, "novelty").passes
    leaky = _rows("novelty", [1, 1, 1.0], [1.3, 1.31, 1.29], [1.6, 1.62, 1.58], copies=[0.5, 0.5, 0.5])
    check = check_metric(leaky, "novelty")
    assert not check.passes and "copies of training rows score novelty 0.5" in check.reason


def test_sanity_check_covers_shared_metrics_and_round_trips():
    rows = _rows("mmd", [0, 0.01, 0], [1, 1.1, 1.2], [3, 3.1, 3.2])
    out = sanity_check(rows)
    assert list(out) == ["mmd"] and passing(out) == ["mmd"]
    assert sanity_check({"heldout": {}, "gaussian": {}}) == {}  # no noise row: nothing to check
    assert MetricSanity.from_dict(out["mmd"].to_dict()) == out["mmd"]


def _table(sanity: dict, nll: dict | None = None) -> EvaluationTable:
    rows = {
        "model": {"fidelity": 1.2, "c2st_auc": 0.7, "mmd": 0.001},
        "gaussian": {"fidelity": 1.1, "c2st_auc": 0.6, "mmd": 0.002},
        "heldout": {"fidelity": 1.0, "c2st_auc": 0.5, "mmd": 0.0},
    }
    t = EvaluationTable(rows, 100, 50, 800, 100, 0, 20, 5, sanity=sanity, nll=nll)
    t.flags = t.compute_flags()
    return t


def test_only_passing_metrics_rank_and_flag():
    fail = {"passes": False, "margins": [0.1, 5.0], "reason": "x", "metric": "c2st_auc", "values": [0.5, 0.6, 0.7]}
    ok = {"passes": True, "margins": [9.0, 9.0], "reason": "", "metric": "mmd", "values": [0, 0.002, 0.01]}
    table = _table({"c2st_auc": fail, "mmd": {**ok}})
    assert table.ranked_metrics() == ["mmd"]
    assert table.flags == [] and table.beats_gaussian_overall() is True  # mmd beats the Gaussian; c2st is not asked
    without = _table({})  # no sanity check: the fixed pair decides
    assert without.ranked_metrics() == ["fidelity", "c2st_auc"] and without.beats_gaussian_overall() is False


def test_nll_decides_the_verdict_when_present():
    nll = {"model": -4.3, "gaussian": -4.4, "gap": 0.1, "gap_std_error": 0.01, "beats_gaussian": False}
    ok = {"passes": True, "margins": [9.0, 9.0], "reason": "", "metric": "mmd", "values": [0, 0.002, 0.01]}
    table = _table({"mmd": ok}, nll)
    assert table.beats_gaussian_overall() is False  # mmd says yes, NLL says no
    assert any("does NOT beat the Gaussian fit by held-out NLL: -4.3 vs -4.4" in f for f in table.flags)
    back = EvaluationTable.from_dict(table.to_dict())
    assert back.nll == table.nll and back.sanity == table.sanity
