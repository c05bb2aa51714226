"""Study files: axes product, extras, precedence, stable ids, errors that name key and file."""

from __future__ import annotations

import re

import pytest

from flowstudy.errors import ConfigError
from flowstudy.study.spec import load_spec, parse_spec
from flowstudy.train.config import RECIPES


def _spec(axes: dict, base: dict | None = None, extras: list | None = None, study: dict | None = None):
    values = {
        "study": {"name": "t", "seeds": [0, 1], **(study or {})},
        "base": {"data": "some/dir:train", **(base or {})},
        "axes": axes,
    }
    if extras is not None:
        values["extra"] = extras
    return parse_spec(values, source="t.toml")


def test_axes_product_in_file_order_with_seeds_innermost():
    spec = _spec({"arch": ["mlp", "dit"], "flow": ["icfm", "otcfm"]})
    got = [(c.config.arch, c.config.flow, c.seed) for c in spec.cells]
    want = [(a, f, s) for a in ("mlp", "dit") for f in ("icfm", "otcfm") for s in (0, 1)]
    assert got == want
    assert [c.group for c in spec.cells[::2]] == ["mlp/icfm", "mlp/otcfm", "dit/icfm", "dit/otcfm"]
    assert spec.axis_names == ["arch", "flow"]


def test_precedence_defaults_recipe_base_axes():
    spec = _spec({"arch": ["mlp", "dit"], "lr": [0.01]}, base={"batch_size": 64})
    mlp, dit = spec.cells[0].config, spec.cells[2].config
    assert mlp.steps == RECIPES["mlp"]["steps"] and dit.steps == RECIPES["dit"]["steps"]  # recipe
    assert mlp.batch_size == dit.batch_size == 64  # base over recipe
    assert mlp.lr == dit.lr == 0.01  # axis over recipe
    spec = _spec({"arch": ["dit"]})
    assert spec.cells[0].config.lr == RECIPES["dit"]["lr"]


def test_extras_replace_named_axes_and_cross_the_others():
    extras = [{"axes": {"subset": [100, 200], "arch": ["mlp"]}}]
    spec = _spec({"arch": ["mlp", "dit"], "flow": ["icfm", "otcfm"]}, extras=extras)
    added = [c for c in spec.cells if c.config.subset is not None]
    # arch=mlp x both flows (not named by the extra) x subset x 2 seeds: main axes in file
    # order, then the extra's new axes, seeds innermost
    assert [(c.config.subset, c.config.arch, c.config.flow, c.seed) for c in added] == [
        (s, "mlp", f, seed) for f in ("icfm", "otcfm") for s in (100, 200) for seed in (0, 1)
    ]
    assert added[0].group == "mlp/icfm/subset=100"
    assert spec.axis_names == ["arch", "flow", "subset"]
    assert all(c.values["subset"] is None for c in spec.cells[:8])  # main grid: resolved base value


def test_extras_pin_axes_carry_their_base_and_duplicates_are_kept_once():
    extras = [
        {"axes": {"subset": [100], "flow": ["icfm"]}, "base": {"lr": 0.005}},
        {"axes": {"arch": ["mlp"]}},  # reproduces main cells: no new ones
    ]
    spec = _spec({"arch": ["mlp"], "flow": ["icfm", "otcfm"]}, extras=extras)
    assert len(spec.cells) == 4 + 2
    extra_cells = spec.cells[4:]
    assert all(c.config.lr == 0.005 and c.config.flow == "icfm" and c.config.subset == 100 for c in extra_cells)
    assert all(c.config.lr == RECIPES["mlp"]["lr"] for c in spec.cells[:4])


def test_ids_are_readable_stable_and_follow_the_resolved_config():
    a = _spec({"arch": ["mlp"], "flow": ["icfm"]})
    b = _spec({"flow": ["icfm"], "arch": ["mlp"]})  # same cells, axes written in another order
    c = _spec({"arch": ["mlp"], "flow": ["icfm"]}, base={"lr": 0.002})
    ids = [cell.id for cell in a.cells]
    assert ids == [cell.id for cell in _spec({"arch": ["mlp"], "flow": ["icfm"]}).cells]
    assert re.fullmatch(r"mlp_icfm_s0_[0-9a-f]{8}", ids[0])
    assert [i[-8:] for i in ids] == [cell.id[-8:] for cell in b.cells]  # the hash ignores axis order
    assert all(x.id != y.id for x, y in zip(a.cells, c.cells))  # an edited base gives new ids
    assert len(set(ids)) == len(ids)


def test_nll_graph_is_read_checked_and_no_part_of_the_ids():
    plain = _spec({"arch": ["mlp"]}, study={"nll": "exact"})
    graph = _spec({"arch": ["mlp"]}, study={"nll": "exact", "nll_graph": True})
    assert graph.cells[0].evaluation.nll_graph and not plain.cells[0].evaluation.nll_graph
    assert [c.id for c in graph.cells] == [c.id for c in plain.cells]  # how NLL runs, not what it is
    assert [c.id for c in _spec({"arch": ["mlp"]}, study={"nll": "hutchinson"}).cells] != [c.id for c in plain.cells]
    with pytest.raises(ConfigError, match=r"t.toml: \[study\] nll_graph must be bool; got 1"):
        _spec({"arch": ["mlp"]}, study={"nll_graph": 1})


def test_sampling_and_nested_axes():
    spec = _spec(
        {"model.hidden_dim": [32, 64], "sample_steps": [4, 16]},
        base={"arch": "mlp-tiny", "model": {"num_layers": 2}},
        study={"seeds": [0], "solver": "heun"},
    )
    assert [c.config.model for c in spec.cells[::2]] == [{"num_layers": 2, "hidden_dim": 32}, {"num_layers": 2, "hidden_dim": 64}]
    assert [(c.evaluation.solver, c.evaluation.steps) for c in spec.cells] == [("heun", 4), ("heun", 16)] * 2
    # cells that differ only in how they are sampled share one training run
    assert spec.cells[0].run_name == spec.cells[1].run_name and spec.cells[0].id != spec.cells[1].id
    assert spec.cells[0].run_name != spec.cells[2].run_name
    assert spec.cells[0].group == "model.hidden_dim=32/sample_steps=4"


def test_seed_axis_replaces_study_seeds():
    spec = parse_spec({"study": {"name": "t"}, "base": {"data": "d:train"}, "axes": {"seed": [3, 4]}}, "t.toml")
    assert [c.seed for c in spec.cells] == [3, 4] and spec.axis_names == []
    with pytest.raises(ConfigError, match="not both"):
        _spec({"seed": [3]})


@pytest.mark.parametrize(
    ("values", "key"),
    [
        ({"study": {"name": "t", "sedes": [0]}, "axes": {}}, "sedes"),
        ({"study": {"name": "t"}, "base": {"learning_rate": 1.0}, "axes": {}}, "learning_rate"),
        ({"study": {"name": "t"}, "axes": {"archh": ["mlp"]}}, "archh"),
        ({"study": {"name": "t"}, "axes": {}, "extra": [{"axis": {"arch": ["mlp"]}}]}, "axis"),
        ({"study": {"name": "t"}, "axes": {}, "extra": [{"axes": {"subsett": [1]}}]}, "subsett"),
        ({"study": {"name": "t"}, "axes": {}, "baes": {}}, "baes"),
    ],
)
def test_unknown_keys_name_the_key_and_the_file(values, key):
    with pytest.raises(ConfigError, match=rf"my-study\.toml.*'{key}'"):
        parse_spec(values, source="my-study.toml")


def test_invalid_cells_fail_at_parse_time(tmp_path):
    with pytest.raises(ConfigError, match="unknown architecture 'mlpp'"):
        _spec({"arch": ["mlp", "mlpp"]})
    with pytest.raises(ConfigError, match="unknown flow"):
        _spec({"flow": ["icfm", "nope"]})
    with pytest.raises(ConfigError, match="unknown solver"):
        _spec({"sample_solver": ["euler", "rk5"]})
    with pytest.raises(ConfigError, match="lr must be > 0"):
        _spec({"lr": [0.001, -1.0]})
    with pytest.raises(ConfigError, match="non-empty list"):
        _spec({"arch": []})
    path = tmp_path / "broken.toml"
    path.write_text("[study]\nname = 'x'\n[axes]\nflow = ['icfm'\n")
    with pytest.raises(ConfigError, match="broken.toml: cannot parse TOML"):
        load_spec(path)


def test_load_spec_keeps_the_text(write_spec):
    path = write_spec("tiny")
    spec = load_spec(path)
    assert spec.text == path.read_text() and spec.source == str(path)
    assert [c.group for c in spec.cells] == ["icfm", "icfm", "otcfm", "otcfm", "icfm/subset=100", "icfm/subset=100"]
    assert spec.workers == 2 and spec.evaluation.n_samples == 64 and spec.evaluation.steps == 8
