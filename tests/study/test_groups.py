"""Studies whose runs train in stacked groups give the results of runs trained one by one."""

from __future__ import annotations

import json

import pytest

from flowstudy.errors import ConfigError
from flowstudy.study import load_spec, run_study
from flowstudy.study.groups import pack_cells, train_cell_group
from flowstudy.train import load_checkpoint


def test_cells_pack_by_network_and_host_work(write_spec):
    spec = load_spec(write_spec("tiny"))
    groups = pack_cells(spec.cells, group_size=3)
    flows = [[c.config.flow for c in g] for g in groups]
    # I-CFM runs (2 seeds + 2 subset seeds) in chunks of 3; the exact-OT runs apart (host step)
    assert flows == [["icfm", "icfm", "icfm"], ["icfm"], ["otcfm", "otcfm"]]
    assert sorted(c.run_name for g in groups for c in g) == sorted({c.run_name for c in spec.cells})


def test_runs_with_other_subspace_ranks_are_grouped_apart():
    from dataclasses import replace

    from flowstudy.train.config import resolve_config
    from flowstudy.train.stacked import group_key

    cfg = resolve_config(None, {"arch": "mlp-tiny"})  # the recipe: a rank-128 subspace residual
    assert group_key(cfg) == group_key(replace(cfg, seed=1, lr=2e-3))
    assert group_key(cfg) != group_key(replace(cfg, residual_rank=64))  # other buffer shapes
    assert group_key(cfg) != group_key(replace(cfg, residual_input="full"))


def test_grouped_runs_match_the_one_by_one_runs_and_are_skipped_once_done(reference_study, tmp_path):
    spec_path, reference_dir, _ = reference_study
    spec = load_spec(spec_path)
    first = [g for g in pack_cells(spec.cells, group_size=8) if g[0].config.flow == "icfm"][0]
    done = train_cell_group(first, tmp_path)
    assert sorted(done["runs"]) == sorted(c.run_name for c in first) and len(first) == 4
    for cell in first:
        alone = load_checkpoint(reference_dir / "runs" / cell.run_name / "checkpoints/last.pt")
        grouped = load_checkpoint(tmp_path / "runs" / cell.run_name / "checkpoints/last.pt")
        assert grouped["best_val"] == pytest.approx(alone["best_val"], rel=1e-4)
        summary = json.loads((tmp_path / "runs" / cell.run_name / "train_summary.json").read_text())
        assert summary["group_size"] == 4
        setup = summary["group_setup_seconds"]  # on CPU: no capture, so no wait for one
        assert setup["prepare"] > 0 and setup["capture_wait"] == 0.0 and setup["capture"] >= 0
    assert train_cell_group(first, tmp_path)["runs"] == []  # finished runs are not trained again


def test_cli_group_size_is_checked(reference_study, tmp_path):
    import typer
    from typer.testing import CliRunner

    from flowstudy.cli.study_commands import register

    app = typer.Typer()
    register(app)
    result = CliRunner().invoke(app, ["study", str(reference_study[0]), "--out", str(tmp_path / "s"), "--group-size", "0", "--quiet"])
    assert result.exit_code != 0 and "group_size must be >= 1; got 0" in str(result.exception)
    assert not (tmp_path / "s").exists()  # refused before anything was written
    with pytest.raises(ConfigError, match="group_size must be >= 1; got -1"):  # the Python entry point checks it too
        run_study(reference_study[0], tmp_path / "api", group_size=-1, progress=False)


@pytest.mark.slow
def test_grouped_study_matches_the_one_by_one_study(reference_study, tmp_path):
    """Through the CLI's --group-size, as a user packs a study."""
    import typer
    from typer.testing import CliRunner

    from flowstudy.cli.study_commands import register
    from flowstudy.study.store import STORE_NAME, ResultStore

    spec_path, _, alone = reference_study
    app = typer.Typer()
    register(app)
    result = CliRunner().invoke(app, ["study", str(spec_path), "--out", str(tmp_path / "tiny"), "--group-size", "8", "--workers", "1", "--quiet"])
    assert result.exit_code == 0, result.output
    grouped = ResultStore(tmp_path / "tiny" / STORE_NAME).results([r["id"] for r in alone])
    assert [r["id"] for r in grouped] == [r["id"] for r in alone]
    for a, g in zip(alone, grouped):
        assert g["train_steps"] == a["train_steps"] == 30
        assert g["best_val_loss"] == pytest.approx(a["best_val_loss"], rel=1e-4)
        assert g["fidelity"] == pytest.approx(a["fidelity"], rel=1e-3)
    summaries = [json.loads(p.read_text()) for p in sorted((tmp_path / "tiny" / "runs").glob("*/train_summary.json"))]
    assert sorted(s["group_size"] for s in summaries) == [2, 2, 4, 4, 4, 4]


def test_cell_ids_do_not_depend_on_how_steps_execute(write_spec):
    graph = load_spec(write_spec("ids"))
    eager = load_spec(write_spec("ids", **{'device = "cpu"': 'device = "cpu"\ngraph = false'}))
    assert [c.config.graph for c in eager.cells] == [False] * len(eager.cells)
    assert [c.id for c in graph.cells] == [c.id for c in eager.cells]
    assert [c.run_name for c in graph.cells] == [c.run_name for c in eager.cells]


def test_subsets_smaller_than_a_batch_are_grouped_apart(tmp_path, tiny_data):
    """A run with fewer rows than batch_size draws all of them per step: it cannot share a stacked
    step with runs drawing batch_size rows (this crashed a GPU study with an index out of bounds)."""
    from types import SimpleNamespace

    from flowstudy.train import TrainConfig
    from flowstudy.train.stacked import StackedGroup

    common = dict(data=f"{tiny_data}:train", arch="mlp-tiny", batch_size=64, steps=2, device="cpu")
    configs = [TrainConfig(**common), TrainConfig(**common, subset=40), TrainConfig(**common, subset=100)]
    cells = [SimpleNamespace(config=c, run_name=f"r{k}") for k, c in enumerate(configs)]
    assert [[c.run_name for c in g] for g in pack_cells(cells, group_size=8)] == [["r0", "r2"], ["r1"]]
    with pytest.raises(ConfigError, match="member 1: 40 of 40 rows"):
        StackedGroup(configs, [tmp_path / f"g{k}" for k in range(3)]).fit()


def test_group_training_phase_is_recorded_with_its_failures(tmp_path):
    """STUDY/group_training.json: the phase's wall time, and which groups failed and why (their
    runs then train one by one in their cells)."""
    from types import SimpleNamespace

    from flowstudy.study.runner import GROUP_TRAINING, _train_groups

    seen_between = []

    class Outcomes:  # an executor's map_cells: each group's result or its exception
        def map_cells(self, fn, groups, on_done=None):
            yield groups[0], {"runs": ["a"], "seconds": 1.0}
            seen_between.append(json.loads((tmp_path / GROUP_TRAINING).read_text()))  # as a timeout would find it
            yield groups[1], RuntimeError("device-side assert triggered")

    groups = [[SimpleNamespace(run_name="a")], [SimpleNamespace(run_name="b"), SimpleNamespace(run_name="c")]]
    _train_groups(Outcomes(), groups, tmp_path, progress=False)
    record = json.loads((tmp_path / GROUP_TRAINING).read_text())
    assert record["groups"] == 2 and record["runs"] == 3 and record["seconds"] >= 0
    assert record["failed"] == [{"runs": ["b", "c"], "error": "RuntimeError: device-side assert triggered"}]
    assert record["complete"] and [g["runs"] for g in record["finished"]] == [["a"], ["b", "c"]]
    (partial,) = seen_between
    assert not partial["complete"] and [g["runs"] for g in partial["finished"]] == [["a"]] and partial["failed"] == []
