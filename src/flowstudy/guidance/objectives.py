"""Black-box objectives by spec string: ``score(x: [n, D] original space) -> [n] float64``, higher is better.

Spec strings (an optional ``,noise=SIGMA`` suffix adds Gaussian observation noise):

    cosine:DATASPEC:ROW        cosine similarity to row ROW of DATASPEC (e.g. ``cosine:builtin:sonar-gsm8k-1k:val:17``)
    maxcos:DATASPEC:ROW+ROW    the largest of the cosines to several rows of DATASPEC (two or more modes,
                               e.g. ``maxcos:builtin:sonar-gsm8k-1k:val:17+58``)
    topic:DATASPEC:WORD        mean cosine to the rows of DATASPEC whose text contains WORD (case-insensitive)
    reward:DATASPEC:PROPERTY   a ridge regressor of a property of DATASPEC's texts (``TEXT_PROPERTIES``:
                               ``words``, ``clauses``) fitted on its embeddings when the spec is parsed
                               (e.g. ``reward:builtin:sonar-gsm8k-1k:train:clauses``), then a black box
    python:MODULE:FUNCTION     a user's function ``f(x: np.ndarray [n, D]) -> [n]``

e.g. ``cosine:builtin:sonar-gsm8k-1k:val:17,noise=0.02`` is that cosine observed with noise of std 0.02.

Observation noise is a deterministic function of the candidate and the objective's seed, so a
resumed optimisation observes exactly what an uninterrupted one observed.
"""

from __future__ import annotations

import hashlib
import importlib
import re
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


def _cosines(targets: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """x [n, D] -> cos(x_i, targets_j) [n, m] in float64; targets: [m, D]."""
    t = np.asarray(targets, dtype=np.float64)
    t = t / np.linalg.norm(t, axis=1, keepdims=True)

    def cosines(x: np.ndarray) -> np.ndarray:
        x64 = np.asarray(x, dtype=np.float64)
        return x64 / np.maximum(np.linalg.norm(x64, axis=1, keepdims=True), 1e-30) @ t.T

    return cosines


def cosine_to(targets: np.ndarray) -> ScoreFn:
    """x -> mean_j cos(x, targets_j); targets: [m, D]. Computed in float64."""
    cosines = _cosines(targets)
    return lambda x: cosines(x).mean(axis=1)


def max_cosine_to(targets: np.ndarray) -> ScoreFn:
    """x -> max_j cos(x, targets_j); targets: [m, D]. Computed in float64."""
    cosines = _cosines(targets)
    return lambda x: cosines(x).max(axis=1)


TEXT_PROPERTIES: dict[str, Callable[[str], float]] = {
    "words": lambda text: float(len(text.split())),
    "clauses": lambda text: float(1 + len(re.findall(r"[,;:](?:\s+(?:and|then)\b)?|\s(?:and|then)\s", text))),
}
"""Properties of a text a learned reward predicts: its number of words; its number of clauses (the
steps an instruction asks for: one plus its separators, a comma, semicolon or colon, an "and" or a
"then", where ", then" and ", and" count once)."""

RIDGE_ALPHAS = (0.1, 1.0, 10.0, 100.0, 1000.0, 10000.0)


@dataclass(frozen=True)
class RidgeReward:
    """y_hat(x) = mean_y + ((x - mean_x) / std_x) @ w, fitted by ridge regression on rows [N, D] with
    the penalty ``alpha`` of ``RIDGE_ALPHAS`` that has the smallest leave-one-out error, computed in
    closed form from the SVD Z = U S V^T of the standardised rows: the hat matrix is
    H = U diag(s^2 / (s^2 + alpha)) U^T and the LOO residual is (y - H y)_i / (1 - H_ii)
    (Hastie, Tibshirani & Friedman, ESL §7.10). Deterministic: no random split."""

    mean_x: np.ndarray
    std_x: np.ndarray
    mean_y: float
    w: np.ndarray
    alpha: float
    loo_r2: float

    @classmethod
    def fit(cls, x: np.ndarray, y: np.ndarray) -> RidgeReward:
        """Rows x [N, D] and targets y [N]."""
        x64, y64 = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
        if x64.ndim != 2 or y64.shape != (x64.shape[0],) or x64.shape[0] < 3:
            raise DataError(f"ridge reward needs rows [N >= 3, D] and targets [N]; got {x64.shape} and {y64.shape}")
        mean_x, std_x = x64.mean(0), np.maximum(x64.std(0), 1e-12)
        u, s, vt = np.linalg.svd((x64 - mean_x) / std_x, full_matrices=False)
        yc = y64 - y64.mean()
        uty = u.T @ yc
        best = None
        for alpha in RIDGE_ALPHAS:
            shrink = s**2 / (s**2 + alpha)  # [r]
            loo = (yc - u @ (shrink * uty)) / (1.0 - (u**2) @ shrink)
            err = float(np.mean(loo**2))
            if best is None or err < best[0]:
                best = (err, alpha)
        err, alpha = best
        w = vt.T @ (s / (s**2 + alpha) * uty)
        return cls(mean_x, std_x, float(y64.mean()), w, alpha, 1.0 - err / max(float(np.mean(yc**2)), 1e-30))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """x [n, D] -> predicted property [n] float64."""
        return self.mean_y + ((np.asarray(x, dtype=np.float64) - self.mean_x) / self.std_x) @ self.w


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


def _target_rows(rest: str, spec: str, several: bool) -> tuple[np.ndarray, int]:
    """The rows [m, D] named by ``DATASPEC:ROW`` (or ``DATASPEC:ROW+ROW...`` when ``several``) and D."""
    from flowstudy.data import load_dataset

    data_spec, _, rows = rest.rpartition(":")
    parts = rows.split("+") if several else [rows]
    if not data_spec or (several and len(parts) < 2) or not all(p.isdigit() for p in parts):
        form = "maxcos:DATASPEC:ROW+ROW[+ROW...] with integer rows" if several else "cosine:DATASPEC:ROW with an integer ROW"
        raise ConfigError(f"objective {spec!r}: expected {form}")
    data = load_dataset(data_spec)
    index = [int(p) for p in parts]
    if max(index) >= data.n:
        raise ConfigError(f"objective {spec!r}: row {max(index)} is out of range for {data.source} ({data.n} rows)")
    return data.embeddings[index], data.dim


def _cosine(rest: str, spec: str) -> Objective:
    rows, dim = _target_rows(rest, spec, several=False)
    return Objective(spec, cosine_to(rows), dim)


def _maxcos(rest: str, spec: str) -> Objective:
    rows, dim = _target_rows(rest, spec, several=True)
    return Objective(spec, max_cosine_to(rows), dim)


def target_rows(spec: str) -> np.ndarray | None:
    """The target embeddings [m, D] (original space) of a ``cosine:`` (m = 1) or ``maxcos:`` spec;
    None for every other kind."""
    body, _ = _split_options(spec)
    kind, _, rest = body.partition(":")
    if kind not in ("cosine", "maxcos"):
        return None
    return _target_rows(rest, spec, several=kind == "maxcos")[0]


def _reward(rest: str, spec: str) -> Objective:
    from flowstudy.data import load_dataset

    data_spec, _, name = rest.rpartition(":")
    if not data_spec or name not in TEXT_PROPERTIES:
        raise ConfigError(f"objective {spec!r}: expected reward:DATASPEC:PROPERTY with PROPERTY one of {', '.join(TEXT_PROPERTIES)}")
    data = load_dataset(data_spec)
    if data.texts is None:
        raise DataError(f"objective {spec!r}: {data.source} has no texts to learn {name!r} from")
    y = np.array([TEXT_PROPERTIES[name](text) for text in data.texts])
    return Objective(spec, RidgeReward.fit(data.embeddings, y), data.dim)


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


OBJECTIVES: dict[str, Callable[[str, str], Objective]] = {
    "cosine": _cosine,
    "maxcos": _maxcos,
    "topic": _topic,
    "reward": _reward,
    "python": _python,
}
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
