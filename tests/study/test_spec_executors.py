"""A study file takes every executor the runner offers, and names them when one is wrong."""

import pytest

from flowstudy.errors import ConfigError
from flowstudy.study.executors import EXECUTORS
from flowstudy.study.spec import parse_spec


def _values(executor: str) -> dict:
    return {"study": {"name": "t", "executor": executor}, "base": {"data": "d:train"}, "axes": {"arch": ["mlp"]}}


@pytest.mark.parametrize("name", sorted(EXECUTORS))
def test_every_runner_executor_is_accepted_in_a_study_file(name):
    assert parse_spec(_values(name), source="s.toml").executor == name


def test_threads_is_one_of_them():
    assert "threads" in EXECUTORS  # documented in the study docs; the file refused it before


def test_an_unknown_executor_names_the_valid_ones():
    with pytest.raises(ConfigError, match=r"s\.toml: \[study\] executor must be one of local, threads, ray; got 'thread'"):
        parse_spec(_values("thread"), source="s.toml")
