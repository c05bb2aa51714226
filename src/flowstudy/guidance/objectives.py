"""Black-box objectives by spec string: ``score(x: [n, D] original space) -> [n] float64``, higher is better.

Spec strings (an optional ``,noise=SIGMA`` suffix adds Gaussian observation noise):

    cosine:DATASPEC:ROW        cosine similarity to row ROW of DATASPEC (e.g. ``cosine:builtin:sonar-gsm8k-1k:val:17``)
    topic:DATASPEC:WORD        mean cosine to the rows of DATASPEC whose text contains WORD (case-insensitive)
    python:MODULE:FUNCTION     a user's function ``f(x: np.ndarray [n, D]) -> [n]``

Observation noise is a deterministic function of the candidate and the objective's seed, so a
resumed optimisation observes exactly what an uninterrupted one observed.
"""

from __future__ import annotations

import hashlib
import importlib
from dataclasses import dataclass
from typing import Callable

import numpy as np

from flowstudy.errors import ConfigError, DataError

ScoreFn = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Objective:
    """A named score function over original-space embeddings of dimension ``dim`` (None: any)."""

    spec: str
    fn: ScoreFn
    dim: int | None = None

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """x: [n, D] -> scores [n] float64; checks the shape and that every score is finite."""
        x = np.asarray(x)
        if x.ndim != 2 or (self.dim is not None and x.shape[1] != self.dim):
            raise DataError(f"objective {self.spec}: candidates must have shape [n, {self.dim}]; got {x.shape}")
        y = np.asarray(self.fn(x), dtype=np.float64).reshape(-1)
        if y.shape != (x.shape[0],):
            raise DataError(f"objective {self.spec}: returned {y.shape[0]} scores for {x.shape[0]} candidates")
        if not np.isfinite(y).all():
            raise DataError(f"objective {self.spec}: returned non-finite scores at rows {np.flatnonzero(~np.isfinite(y)).tolist()}")
        return y


def cosine_to(targets: np.ndarray) -> ScoreFn:
    """x -> mean_j cos(x, targets_j); targets: [m, D]. Computed in float64."""
    t = np.asarray(targets, dtype=np.float64)
    t = t / np.linalg.norm(t, axis=1, keepdims=True)

    def score(x: np.ndarray) -> np.ndarray:
        x64 = np.asarray(x, dtype=np.float64)
        x64 = x64 / np.maximum(np.linalg.norm(x64, axis=1, keepdims=True), 1e-30)
        return (x64 @ t.T).mean(axis=1)

    return score


def with_noise(fn: ScoreFn, sigma: float, seed: int = 0) -> ScoreFn:
    """fn(x) + sigma·e, with e ~ N(0, 1) seeded by the bytes of each candidate row (reproducible)."""

    def score(x: np.ndarray) -> np.ndarray:
        clean = fn(x)
        x32 = np.ascontiguousarray(np.asarray(x, dtype=np.float32))
        noise = [
            np.random.default_rng([seed, int.from_bytes(hashlib.sha256(row.tobytes()).digest()[:8], "little")]).standard_normal()
            for row in x32
        ]
        return clean + sigma * np.asarray(noise)

    return score


def _split_options(spec: str) -> tuple[str, dict[str, float]]:
    body, *opts = spec.split(",")
    options = {}
    for opt in opts:
        key, sep, value = opt.partition("=")
        if not sep or key not in ("noise", "seed"):
            raise ConfigError(f"objective {spec!r}: unknown option {opt!r}; valid: noise=SIGMA, seed=N")
        try:
            options[key] = float(value)
        except ValueError:
            raise ConfigError(f"objective {spec!r}: option {key} must be a number; got {value!r}") from None
    return body, options


def _cosine(rest: str, spec: str) -> Objective:
    from flowstudy.data import load_dataset

    data_spec, _, row = rest.rpartition(":")
    if not data_spec or not row.lstrip("-").isdigit():
        raise ConfigError(f"objective {spec!r}: expected cosine:DATASPEC:ROW with an integer ROW")
    data = load_dataset(data_spec)
    index = int(row)
    if not 0 <= index < data.n:
        raise ConfigError(f"objective {spec!r}: row {index} is out of range for {data.source} ({data.n} rows)")
    return Objective(spec, cosine_to(data.embeddings[index : index + 1]), data.dim)


def _topic(rest: str, spec: str) -> Objective:
    from flowstudy.data import load_dataset

    data_spec, _, word = rest.rpartition(":")
    if not data_spec or not word:
        raise ConfigError(f"objective {spec!r}: expected topic:DATASPEC:WORD")
    data = load_dataset(data_spec)
    if data.texts is None:
        raise DataError(f"objective {spec!r}: {data.source} has no texts to match {word!r} against")
    rows = [i for i, text in enumerate(data.texts) if word.lower() in text.lower()]
    if not rows:
        raise DataError(f"objective {spec!r}: no text of {data.source} contains {word!r}")
    return Objective(spec, cosine_to(data.embeddings[rows]), data.dim)


def _python(rest: str, spec: str) -> Objective:
    module, _, name = rest.rpartition(":")
    if not module or not name:
        raise ConfigError(f"objective {spec!r}: expected python:MODULE:FUNCTION")
    try:
        fn = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as err:
        raise ConfigError(f"objective {spec!r}: cannot load {module}.{name}: {err}") from err
    return Objective(spec, fn)


OBJECTIVES: dict[str, Callable[[str, str], Objective]] = {"cosine": _cosine, "topic": _topic, "python": _python}
"""Objective kind -> builder ``(rest of the spec, whole spec) -> Objective``."""


def parse_objective(spec: str) -> Objective:
    """The objective named by ``spec`` (module docstring); unknown kinds fail with the valid ones."""
    body, options = _split_options(spec)
    kind, sep, rest = body.partition(":")
    if not sep or kind not in OBJECTIVES:
        raise ConfigError(f"unknown objective {spec!r}; valid kinds: {', '.join(f'{k}:...' for k in OBJECTIVES)}")
    objective = OBJECTIVES[kind](rest, spec)
    if options.get("noise", 0.0) > 0:
        noisy = with_noise(objective.fn, options["noise"], int(options.get("seed", 0)))
        objective = Objective(spec, noisy, objective.dim)
    return objective
