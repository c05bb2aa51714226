"""Optimisation methods behind one interface: ``METHODS[name](problem, **options)`` ->
a :class:`Method` with ``initial(n, seed)`` and ``propose(history, q, seed)``."""

from __future__ import annotations

from flowstudy.errors import ConfigError
from flowstudy.guidance.methods.base import Method, Problem
from flowstudy.guidance.methods.bo import BoMethod, TurboMethod
from flowstudy.guidance.methods.guided import GuidedMethod
from flowstudy.guidance.methods.latent import LatentMethod
from flowstudy.guidance.methods.linear import LinearMethod
from flowstudy.guidance.methods.simple import PoolMethod, PriorMethod, RankMethod

METHODS: dict[str, type[Method]] = {
    cls.name: cls for cls in (PriorMethod, PoolMethod, RankMethod, GuidedMethod, BoMethod, TurboMethod, LatentMethod, LinearMethod)
}
"""Method name -> class."""

DEFAULT_METHOD = "linear"
"""The method to use when none is named: the best mean final cosine on the benchmark's held-out
targets (docs/results/guidance/NOTES.md, "A surrogate that sees 128 directions")."""


def create_method(name: str, problem: Problem, **options: object) -> Method:
    """Build method ``name`` on ``problem``; unknown names and options fail with the valid ones."""
    if name not in METHODS:
        raise ConfigError(f"unknown method {name!r}; valid: {', '.join(METHODS)}")
    try:
        return METHODS[name](problem, **options)
    except TypeError as err:
        raise ConfigError(f"method {name!r}: bad options {sorted(options)}: {err}") from err


__all__ = ["DEFAULT_METHOD", "METHODS", "Method", "Problem", "create_method"]
