"""Guided optimisation through the API: optimise a black-box score over a prior's embeddings.

    result = fs.optimize("runs/mlp", "cosine:builtin:sonar-gsm8k-1k:val:17", method="guided", budget=100, out="opt/g0")
    result.best_x, result.best_score, result.best_texts      # the best embedding [D] and its nearest training texts

    loop = fs.ask_tell("opt/ext", prior="runs/mlp")          # scores computed elsewhere
    candidates = loop.ask()                                   # x [q, D] (original space) and nearest texts
    loop.tell(scores)                                         # one score per candidate

Every evaluation is saved in the state directory ``out`` as it happens; a killed run resumes and
proposes exactly what it would have (:mod:`flowstudy.guidance.loop`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from flowstudy.errors import ConfigError
from flowstudy.run import Run

__all__ = ["AskTell", "Candidates", "OptimizationResult", "ask_tell", "optimization_report", "optimize"]

Objective = Callable[[np.ndarray], np.ndarray]
"""scores [q] of candidates [q, D] in the original space; higher is better."""


@dataclass(frozen=True)
class OptimizationResult:
    """An optimisation's evaluations in order and its best one.

    x: float32 [n, D] (original space), y: float64 [n], round: [n] (0 = the initial design);
    best_x [D] / best_score: the highest score (the first on ties) and ``best_texts`` its nearest
    training rows (``nearest_train_row``, ``distance`` (standardised), ``cosine``, ``text``).
    """

    path: Path
    method: str
    x: np.ndarray
    y: np.ndarray
    round: np.ndarray
    best_index: int
    best_texts: dict[str, Any]

    @property
    def best_x(self) -> np.ndarray:
        """The best embedding [D], original space."""
        return self.x[self.best_index]

    @property
    def best_score(self) -> float:
        """Its score."""
        return float(self.y[self.best_index])

    @property
    def best_so_far(self) -> np.ndarray:
        """The running maximum of the scores [n] (the curve the report plots)."""
        return np.maximum.accumulate(self.y)

    def __repr__(self) -> str:
        return (
            f"OptimizationResult({self.method}: {len(self.y)} evaluations in {str(self.path)!r}; best {self.best_score:.4f} "
            f"at evaluation {self.best_index}, nearest text {self.best_texts.get('text')!r})"
        )


@dataclass(frozen=True)
class Candidates:
    """Candidates handed out by :meth:`AskTell.ask`: x float32 [q, D] (original space) and, per row,
    its nearest training row and text."""

    x: np.ndarray
    texts: list[dict[str, Any]]


SETTINGS = ("budget", "q", "n_init", "seed", "steps", "pca", "kernel", "options", "label")
"""An optimisation's settings besides its prior, objective and method (see :func:`optimize`)."""


def _loop_config(prior: str, objective: str, method: str, settings: dict[str, Any]):
    from flowstudy.guidance.loop import LoopConfig

    unknown = sorted(set(settings) - set(SETTINGS))
    if unknown:
        raise ConfigError(f"unknown optimisation setting(s) {', '.join(unknown)}; valid: {', '.join(SETTINGS)}")
    values = dict(settings)
    pca, options = values.pop("pca", 32), values.pop("options", None)
    return LoopConfig(prior=prior, objective=objective, method=method, pca_k=pca or None, options=dict(options or {}), **values)


def _prior(prior: Run | str | os.PathLike):
    """(spec string, Prior or None): a Run becomes a prior here; a spec is loaded by the loop."""
    if isinstance(prior, Run):
        from flowstudy.guidance.prior import Prior

        if prior.path is None:
            raise ConfigError("an optimisation's prior must be a run saved in a directory (its state names it)")
        return str(prior.path), Prior.of_run(prior)
    return str(prior), None


def _result(state) -> OptimizationResult:
    from flowstudy.guidance.decode import nearest_texts

    arrays = state.evaluations()
    if len(arrays["y"]) == 0:
        raise ConfigError(f"{state.root}: no evaluations yet")
    best = int(np.argmax(arrays["y"]))  # the first of equal maxima
    texts = nearest_texts(state.prior, arrays["x"][best : best + 1])[0]
    return OptimizationResult(state.root, state.config.name, arrays["x"], arrays["y"], arrays["round"], best, texts)


def optimize(
    prior: Run | str | os.PathLike,
    objective: str | Objective,
    *,
    out: str | os.PathLike,
    method: str = "linear",
    budget: int = 100,
    q: int = 4,
    n_init: int = 20,
    seed: int = 0,
    steps: int = 32,
    pca: int | None = 32,
    kernel: str = "rbf",
    options: dict[str, Any] | None = None,
    label: str | None = None,
    on_round: Callable[[OptimizationResult], None] | None = None,
) -> OptimizationResult:
    """Maximise ``objective`` over embeddings drawn from ``prior`` with ``budget`` evaluations in all.

    ``prior``: a :class:`Run`, a run directory, or ``gaussian:DATASPEC`` (the Gaussian fit alone).
    ``objective``: a spec (``cosine:DATASPEC:ROW``, ``topic:DATASPEC:WORD``,
    ``python:MODULE:FUNCTION``, ``,noise=SIGMA``) or a function scores [q] <- x [q, D] (original space).
    ``method``: linear (the default), prior, pool, rank, guided, bo, turbo or latent, with ``options`` (e.g.
    ``{"strength": 0.3}``); ``q`` candidates per round after ``n_init`` initial draws; ``steps``:
    Euler steps per decoding; ``pca``: the surrogate reads the top-k whitened principal
    components (None or 0: every coordinate); ``kernel``: rbf or rbf+linear. The state lives in
    ``out``: calling again with the same settings resumes (a larger ``budget`` goes on).
    ``on_round`` sees the result after every round.
    """
    from flowstudy.guidance.loop import Optimisation
    from flowstudy.guidance.objectives import parse_objective

    if isinstance(objective, str):
        spec, fn = objective, parse_objective(objective).fn
    else:
        spec, fn = f"callable:{getattr(objective, '__qualname__', type(objective).__name__)}", objective
    prior_spec, loaded = _prior(prior)
    settings = dict(budget=budget, q=q, n_init=n_init, seed=seed, steps=steps, pca=pca, kernel=kernel, options=options, label=label)
    config = _loop_config(prior_spec, spec, method, settings)
    state = Optimisation.create_or_open(out, config, loaded)
    state.run(fn, on_round=None if on_round is None else (lambda s: on_round(_result(s))))
    return _result(state)


class AskTell:
    """An optimisation whose scores arrive from outside: :meth:`ask` for candidates, :meth:`tell` their scores.

    Asking again before telling hands out the same candidates (they are saved in the state
    directory as ``pending.npy`` with ``pending.jsonl``, their nearest texts).
    """

    def __init__(self, state) -> None:
        self._state = state

    @property
    def path(self) -> Path:
        """The state directory."""
        return self._state.root

    @property
    def budget(self) -> int:
        """Evaluations in all."""
        return self._state.config.budget

    def ask(self, q: int | None = None) -> Candidates:
        """The next candidates: the initial design first (``n_init`` prior draws), then ``q`` per round."""
        from flowstudy.guidance.decode import nearest_texts

        x = self._state.ask(q)
        return Candidates(x, nearest_texts(self._state.prior, x))

    def tell(self, scores: np.ndarray | list[float] | str, candidates: np.ndarray | None = None) -> OptimizationResult:
        """Record the scores [q] of the pending candidates (or of ``candidates`` [q, D], original space).

        ``scores``: numbers, or a file (.npy, .json, .txt one per line) or an inline ``0.1,0.5,...``.
        All or nothing: bad input leaves the state as it was.
        """
        from flowstudy.guidance.loop import read_scores

        values = read_scores(scores) if isinstance(scores, str) else np.asarray(scores, dtype=np.float64)
        self._state.tell(values, None if candidates is None else np.asarray(candidates))
        return _result(self._state)

    def result(self) -> OptimizationResult:
        """Every evaluation so far and the best one."""
        return _result(self._state)


def ask_tell(out: str | os.PathLike, *, prior: Run | str | os.PathLike | None = None, method: str = "linear", **settings: Any) -> AskTell:
    """The ask/tell optimisation in ``out``: opened when it exists, else created with ``prior``,
    ``method`` and ``settings`` (:func:`optimize`'s: budget, q, n_init, seed, steps, pca, kernel, options)."""
    from flowstudy.guidance.loop import EXTERNAL, Optimisation

    if (Path(out) / "config.json").exists():
        return AskTell(Optimisation.open(out))
    if prior is None:
        raise ConfigError(
            f"{out}: not an optimisation directory (no config.json); the first ask needs a prior (a run directory or gaussian:DATASPEC)"
        )
    prior_spec, loaded = _prior(prior)
    return AskTell(Optimisation.create_or_open(out, _loop_config(prior_spec, EXTERNAL, method, settings), loaded))


def optimization_report(dirs: list[str | os.PathLike], *, out: str | os.PathLike | None = None, realism: bool = True):
    """report.md, report.html and best_so_far.png over optimisation directories (or folders holding
    them): best-so-far curves with 95 % CIs, the final-best table, the best texts and, with
    ``realism``, how real the best embeddings look (loads every prior). Returns the paths
    (``markdown``, ``html``, ``figure``)."""
    from flowstudy.guidance.report import write_report

    return write_report([str(d) for d in dirs], out, realism=realism)
