"""The cells of a stacked group evaluated at once against the cell-by-cell reference (CPU).

One tiny study (16-D, subspace residual of rank 6, two flows x two seeds plus a data-size cell) is
trained once; its cells are then evaluated cell by cell (:func:`run_cell`) and as groups
(:func:`evaluate_cells`) from the same trained runs, and every metric must agree to 1e-5.
"""

from __future__ import annotations

import math
import shutil

import numpy as np
import pytest
import torch

from flowstudy.study import load_spec, run_cell
from flowstudy.study.cell import VOLATILE_FIELDS
from flowstudy.study.group_eval import evaluate_cells, evaluation_groups
from flowstudy.study.groups import pack_cells, train_cell_group

RANK_EXTRA = """
[[extra]]
axes = {subset = [100], flow = ["icfm"]}
"""


@pytest.fixture(scope="module")
def trained_runs(write_spec, tmp_path_factory):
    """(spec, study dir with the trained runs)."""
    spec = load_spec(write_spec("groupeval", extra=RANK_EXTRA, **{'device = "cpu"': 'device = "cpu"\nresidual_rank = 6\nbase_field = "gaussian"\n', "[study]": '[study]\nnll = "exact"\nnll_steps = 4'}))
    study_dir = tmp_path_factory.mktemp("groupeval")
    for group in pack_cells(spec.cells, 8):
        train_cell_group(group, study_dir)
    return spec, study_dir


@pytest.fixture(scope="module")
def trained(trained_runs):
    """(spec, study dir with trained runs, cell-by-cell results by cell id)."""
    spec, study_dir = trained_runs
    reference = {cell.id: run_cell(cell, study_dir) for cell in spec.cells}
    return spec, study_dir, reference


def _close(a, b, tol: float) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        if a is None or b is None:
            return a is b
        return math.isclose(a, b, rel_tol=tol, abs_tol=tol) or (math.isnan(a) and math.isnan(b))
    return a == b


def test_groups_match_the_cell_path(trained, tmp_path):
    spec, study_dir, reference = trained
    groups = evaluation_groups(spec.cells, 4)
    assert [len(g) for g in groups] == [4, 2]  # one network: both flows, both seeds and the data-size cells
    copy = tmp_path / "study"
    shutil.copytree(study_dir / "runs", copy / "runs")
    for group in groups:
        results = evaluate_cells(group, copy)
        for cell, result in zip(group, results):
            assert isinstance(result, dict), result
            assert result["eval_group_size"] == len(group)
            expected = reference[cell.id]
            keys = set(expected) - set(VOLATILE_FIELDS)
            assert keys == set(result) - set(VOLATILE_FIELDS)
            assert "nll" in keys and "fidelity" in keys and "c2st_knn_auc" in keys
            bad = {k: (result[k], expected[k]) for k in keys if not _close(result[k], expected[k], 1e-5)}
            assert not bad, f"{cell.id}: {bad}"
            samples = np.load(copy / "cells" / cell.id / "samples.npy")
            np.testing.assert_allclose(samples, np.load(study_dir / "cells" / cell.id / "samples.npy"), rtol=1e-5, atol=1e-7)


def test_stacked_field_matches_each_member(trained):
    """The vmapped field and the member-by-member field equal each member's own subspace velocity."""
    from flowstudy.flows.subspace import EigenbasisFlow
    from flowstudy.study.stacked_field import StackedEigenField
    from flowstudy.run import load_run

    spec, study_dir, _ = trained
    group = evaluation_groups(spec.cells, 8)[0]
    flows = [EigenbasisFlow.of(load_run(study_dir / "runs" / c.run_name, device="cpu").model) for c in group]
    w = torch.randn(len(flows), 5, flows[0].k, generator=torch.Generator().manual_seed(0))
    t = torch.rand(len(flows), 5, generator=torch.Generator().manual_seed(1))
    own = torch.stack([f.subspace_velocity(w[i], t[i]) for i, f in enumerate(flows)])
    for vmap in (True, False):
        field = StackedEigenField(flows, vmap=vmap)
        assert field.vmapped is vmap
        torch.testing.assert_close(field(w, t), own, rtol=1e-6, atol=1e-6)


def test_members_log_prob_is_the_exact_divergence(trained):
    """The folded-cotangent divergence equals the trace of the Jacobian from torch.autograd.functional
    (float64 check on a few rows), and the chunking does not change the result."""
    from flowstudy.flows.subspace import EigenbasisFlow
    from flowstudy.study.stacked_field import StackedEigenField, _augmented, members_log_prob
    from flowstudy.run import load_run

    spec, study_dir, _ = trained
    group = evaluation_groups(spec.cells, 8)[0]
    flows = [EigenbasisFlow.of(load_run(study_dir / "runs" / c.run_name, device="cpu").model) for c in group]
    field = StackedEigenField(flows)
    k, K = field.k, field.K
    w = torch.randn(K * 3, k, generator=torch.Generator().manual_seed(2))
    t = torch.full((K * 3,), 0.3)
    for functional in (True, False):  # torch.func's vmapped VJPs, and the folded cotangents with one backward pass
        out = _augmented(field, "fp32", functional)(torch.cat([w, torch.zeros(K * 3, 1)], dim=1), t)
        for i, flow in enumerate(flows):
            for row in range(3):
                x = w[i * 3 + row]
                jac = torch.autograd.functional.jacobian(lambda y: flow.subspace_velocity(y[None], torch.tensor([0.3]))[0], x)
                assert out[i * 3 + row, k].item() == pytest.approx(float(torch.trace(jac)), rel=1e-5, abs=1e-5)
                torch.testing.assert_close(out[i * 3 + row, :k], flow.subspace_velocity(x[None], torch.tensor([0.3]))[0])
    rows = [torch.randn(7, k, generator=torch.Generator().manual_seed(3 + i)) for i in range(K)]
    whole, _ = members_log_prob(field, rows, solver="rk4", steps=3)
    chunked, _ = members_log_prob(field, rows, solver="rk4", steps=3, row_budget=K * k * 2)  # chunks of 2 rows, last padded
    folded, _ = members_log_prob(field, rows, solver="rk4", steps=3, functional=False)
    for a, b, c in zip(whole, chunked, folded):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(a, c, rtol=1e-6, atol=1e-5)


def test_groups_of_other_settings_are_kept_apart(trained):
    from dataclasses import replace

    spec, _, _ = trained
    cells = list(spec.cells)
    assert [len(g) for g in evaluation_groups(cells, 1)] == [1] * len(cells)
    cells[1] = replace(cells[1], evaluation=replace(cells[1].evaluation, steps=9))
    cells[2] = replace(cells[2], config=replace(cells[2].config, batch_size=16))
    groups = evaluation_groups(cells, 8)
    assert [[c.id for c in g] for g in groups] == [[cells[i].id for i in (0, 3, 4, 5)], [cells[1].id], [cells[2].id]]


def _cuda_flows(trained_runs):
    from flowstudy.flows.subspace import EigenbasisFlow
    from flowstudy.run import load_run

    spec, study_dir = trained_runs
    group = evaluation_groups(spec.cells, 8)[0]
    runs = [load_run(study_dir / "runs" / c.run_name, device="cuda") for c in group]
    return group, runs, [EigenbasisFlow.of(r.model) for r in runs]


@pytest.mark.gpu
def test_group_sampling_on_cuda_replays_each_runs_sampler(trained_runs):
    """One graph-replayed solve of all members: the eager solve's samples and each run's own sampler's
    (same noise from each member's generator; vmapped against single products: float32 rounding)."""
    from flowstudy.sampling import sample_standardized
    from flowstudy.study.stacked_field import StackedEigenField, sample_members

    group, runs, flows = _cuda_flows(trained_runs)
    field = StackedEigenField(flows)
    seeds = [c.seed + 10 * i for i, c in enumerate(group)]
    graphed, nfe = sample_members(field, 300, seeds, solver="midpoint", steps=8, dim=16, graph=True)
    eager, _ = sample_members(field, 300, seeds, solver="midpoint", steps=8, dim=16, graph=False)
    assert nfe == 16
    for g, e, run, seed in zip(graphed, eager, runs, seeds):
        torch.testing.assert_close(g, e, rtol=1e-5, atol=1e-6)
        own, _ = sample_standardized(run, 300, solver="midpoint", steps=8, seed=seed)
        torch.testing.assert_close(g, own, rtol=1e-4, atol=1e-5)


@pytest.mark.gpu
def test_group_log_prob_on_cuda_matches_each_runs_ode(trained_runs):
    """The members' augmented solve, graph-replayed and eager, against ode_log_prob of each member's own field."""
    from flowstudy.metrics.likelihood import ode_log_prob
    from flowstudy.study.stacked_field import StackedEigenField, members_log_prob

    _, _, flows = _cuda_flows(trained_runs)
    field = StackedEigenField(flows)
    rows = [torch.randn(37, field.k, generator=torch.Generator().manual_seed(i)) for i in range(field.K)]
    graphed, nfe = members_log_prob(field, rows, solver="rk4", steps=5, graph=True, row_budget=field.K * field.k * 16)
    eager, _ = members_log_prob(field, rows, solver="rk4", steps=5, graph=False)
    assert nfe == 20
    for g, e, flow, x in zip(graphed, eager, flows, rows):
        torch.testing.assert_close(g, e, rtol=1e-5, atol=1e-4)
        own, _ = ode_log_prob(flow.subspace_velocity, x.cuda(), estimator="exact", chunk=field.k, solver="rk4", steps=5)
        torch.testing.assert_close(g, own[0].cpu().double(), rtol=1e-5, atol=1e-4)
