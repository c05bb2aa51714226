"""The Ray executor on a real local Ray instance gives the local executor's results table."""

from __future__ import annotations

from functools import partial

import pytest

from flowstudy.study import RayExecutor, load_spec, run_study
from flowstudy.study.cell import run_cell
from flowstudy.study.executors import CellError

ray = pytest.importorskip("ray", reason="the Ray executor needs ray (pip install 'flowstudy[ray]')")


@pytest.fixture(scope="module")
def ray_instance():
    """A local Ray instance with 2 CPUs, shut down after this module."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def test_ray_executor_matches_the_local_executor(ray_instance, reference_study, same_table, tmp_path):
    spec_path, _, reference = reference_study
    results = run_study(spec_path, tmp_path / "ray", executor=RayExecutor(num_cpus_per_cell=1), progress=False)
    assert ray.is_initialized()  # an instance the caller started is left running
    # both ran each cell with one torch thread (2 local workers on 2 cores; 1 CPU per Ray task)
    same_table(results, reference)


def test_ray_executor_returns_a_failing_cells_error(ray_instance, write_spec, tmp_path):
    spec = load_spec(write_spec("ray-fails", extra='[[extra]]\naxes = {subset = [100000], flow = ["icfm"]}\n'))
    bad = [c for c in spec.cells if c.config.subset is not None][:1]
    [(cell, outcome)] = list(RayExecutor().map_cells(partial(run_cell, study_dir=tmp_path), bad))
    assert cell is bad[0] and isinstance(outcome, CellError)
    assert str(outcome).startswith("DataError") and "subset of 100000 rows" in str(outcome)
    assert "Traceback" in outcome.traceback_text
