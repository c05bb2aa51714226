"""Tiny studies on a 16-D synthetic data set: real trainer, sampler, metrics and executors."""

from __future__ import annotations

import pytest

from flowstudy.study.cell import VOLATILE_FIELDS

TINY_STUDY = """
[study]
name = "{name}"
seeds = [0, 1]
n_samples = 64
steps = 8
workers = 2
n_splits = 4
n_dist_splits = 2
straightness_rows = 32

[base]
data = "{data}:train"
arch = "mlp-tiny"
recipe = "none"
steps = 30
batch_size = 32
val_every = 10
device = "cpu"

[axes]
flow = ["icfm", "otcfm"]
{extra}
"""

SUBSET_EXTRA = """
[[extra]]
axes = {subset = [100], flow = ["icfm"]}
"""


@pytest.fixture(scope="session")
def write_spec(tiny_data, tmp_path_factory):
    """write_spec(name, extra=SUBSET_EXTRA) -> a tiny study file: 2 flows x 2 seeds, then the extra
    tables (by default I-CFM on a 100-row subset, 2 seeds)."""
    folder = tmp_path_factory.mktemp("specs")

    def write(name: str = "tiny", extra: str = SUBSET_EXTRA, **replace: str):
        text = TINY_STUDY.format(name=name, data=tiny_data, extra=extra)
        for old, new in replace.items():
            text = text.replace(old, new)
        path = folder / f"{name}.toml"
        path.write_text(text)
        return path

    return write


@pytest.fixture(scope="session")
def reference_study(write_spec, tmp_path_factory):
    """The tiny study run once through the local executor: (spec path, study dir, results)."""
    from flowstudy.study import LocalExecutor, run_study

    spec = write_spec("tiny")
    study_dir = tmp_path_factory.mktemp("reference") / "tiny"
    results = run_study(spec, study_dir, executor=LocalExecutor(workers=2), progress=False)
    return spec, study_dir, results


@pytest.fixture(scope="session")
def same_table():
    """same_table(a, b): assert two results tables agree (see :func:`assert_same_table`)."""
    return assert_same_table


def comparable(results: list[dict]) -> list[dict]:
    """Results without the fields that depend on how a run went (wall times, resumption)."""
    return [{k: v for k, v in r.items() if k not in VOLATILE_FIELDS} for r in results]


def assert_same_table(a: list[dict], b: list[dict]) -> None:
    """Same cells in the same order, same values (floats to 1e-6 relative)."""
    a, b = comparable(a), comparable(b)
    assert [r["id"] for r in a] == [r["id"] for r in b]
    for ra, rb in zip(a, b):
        assert ra.keys() == rb.keys()
        for key in ra:
            if isinstance(ra[key], float) and isinstance(rb[key], float):
                assert ra[key] == pytest.approx(rb[key], rel=1e-6, abs=1e-9), (ra["id"], key)
            else:
                assert ra[key] == rb[key], (ra["id"], key)
