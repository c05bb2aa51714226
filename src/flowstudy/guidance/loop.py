"""The optimisation loop and its state directory: seeded, resumable, with ask/tell.

    DIR/config.json             the resolved :class:`LoopConfig`
    DIR/evaluations.npz         x [n, D] float32 (original space, what was scored), y [n] float64,
                                noise [n, D] float32 (NaN rows: not from the flow), round [n], train_row [n]
    DIR/evaluations.jsonl       one line per evaluation: score, round, nearest training text
    DIR/pending.npz, pending.npy, pending.jsonl
                                candidates handed out by ``ask`` and not yet told (npy: original space)

Every evaluation is written (atomically) before the next proposal. A proposal depends only on the
stored evaluations and ``derived_seed(seed, "propose", n)``, so a killed run resumes and proposes
exactly what an uninterrupted run would.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from flowstudy.errors import ConfigError, DataError
from flowstudy.guidance.decode import nearest_texts
from flowstudy.guidance.history import History, Proposal
from flowstudy.guidance.methods import Method, Problem, create_method
from flowstudy.guidance.prior import Prior, load_prior
from flowstudy.io import atomic_save_npy, atomic_save_npz, atomic_write_json, atomic_write_text
from flowstudy.metrics.seeding import derived_seed

EXTERNAL = "external"
"""Objective name of a loop whose scores arrive through ``tell``."""


@dataclass(frozen=True)
class LoopConfig:
    """One optimisation: prior spec, objective spec (or ``external``), method and its options, budget
    (evaluations in all, the initial design included), q per round, n_init, seed, decoding steps and
    the surrogate's PCA dimension (None: all coordinates) and kernel."""

    prior: str
    objective: str
    method: str
    budget: int = 100
    q: int = 4
    n_init: int = 20
    seed: int = 0
    steps: int = 32
    pca_k: int | None = 32
    kernel: str = "rbf"
    options: dict = field(default_factory=dict)
    label: str | None = None

    @property
    def name(self) -> str:
        """The method's name in reports: ``label`` when a study runs variants of one method."""
        return self.label or self.method

    def __post_init__(self) -> None:
        if self.budget < 1 or self.q < 1 or self.n_init < 1:
            raise ConfigError(f"budget, q and n_init must be >= 1; got {self.budget}, {self.q}, {self.n_init}")

    @classmethod
    def from_dict(cls, d: dict, source: str) -> LoopConfig:
        """From a saved dict; unknown fields are a ConfigError naming ``source``."""
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ConfigError(f"{source}: unknown fields {sorted(unknown)}")
        return cls(**d)


class Optimisation:
    """A state directory with its prior, method and evaluations (see the module docstring)."""

    def __init__(self, root: Path, config: LoopConfig, prior: Prior | None = None) -> None:
        self.root, self.config = Path(root), config
        self.prior = prior or load_prior(config.prior)
        problem = Problem(self.prior, steps=config.steps, pca_k=config.pca_k, kernel=config.kernel)
        self.method: Method = create_method(config.method, problem, **config.options)

    # ---- creation and loading -------------------------------------------------------------
    @classmethod
    def create_or_open(cls, root: str | Path, config: LoopConfig, prior: Prior | None = None) -> Optimisation:
        """Open ``root`` if it holds the same configuration (resume), else create it."""
        root = Path(root)
        path = root / "config.json"
        if path.exists():
            saved = LoopConfig.from_dict(json.loads(path.read_text()), str(path))
            if _comparable(saved) != _comparable(config):
                raise ConfigError(f"{root} holds a different optimisation ({_diff(saved, config)}); choose another --out")
            return cls(root, LoopConfig(**{**asdict(saved), "budget": config.budget}), prior)
        state = cls(root, config, prior)  # fails on an unknown method or prior before anything is written
        atomic_write_json(path, asdict(config))
        return state

    @classmethod
    def open(cls, root: str | Path, prior: Prior | None = None) -> Optimisation:
        """An existing optimisation directory (its config.json), with the prior if given."""
        path = Path(root) / "config.json"
        if not path.exists():
            raise ConfigError(f"{root}: not an optimisation directory (no config.json)")
        return cls(Path(root), LoopConfig.from_dict(json.loads(path.read_text()), str(path)), prior)

    # ---- evaluations --------------------------------------------------------------------
    def evaluations(self) -> dict[str, np.ndarray]:
        """Every evaluation so far: x [n, D] float32 (original space), y [n], noise [n, D], round [n], train_row [n]."""
        path = self.root / "evaluations.npz"
        if not path.exists():
            dim = self.prior.dim
            return {
                "x": np.zeros((0, dim), np.float32),
                "y": np.zeros(0),
                "noise": np.zeros((0, dim), np.float32),
                "round": np.zeros(0, np.int64),
                "train_row": np.zeros(0, np.int64),
            }
        with np.load(path) as data:
            return {k: data[k] for k in data.files}

    def history(self) -> History:
        """Every evaluation so far, inputs in the prior's standardised space."""
        a = self.evaluations()
        return History(self.prior.to_std(a["x"]), torch.from_numpy(a["y"]), torch.from_numpy(a["noise"]), a["round"], a["train_row"])

    @property
    def n_evaluated(self) -> int:
        """Number of evaluations recorded."""
        return int(self.evaluations()["y"].shape[0])

    def record(self, proposal: Proposal, x: np.ndarray, scores: np.ndarray) -> None:
        """Append q evaluations (candidates x [q, D] original space, scores [q]) atomically."""
        a = self.evaluations()
        rnd = int(a["round"].max()) + 1 if len(a["round"]) else 0
        new = {
            "x": np.asarray(x, np.float32),
            "y": np.asarray(scores, np.float64),
            "noise": proposal.noise.float().numpy(),
            "round": np.full(len(scores), rnd, np.int64),
            "train_row": proposal.train_row,
        }
        merged = {k: np.concatenate([a[k], new[k]]) for k in a}
        atomic_save_npz(self.root / "evaluations.npz", **merged)
        # the readable log is rebuilt from the state each time: a kill between the writes only delays it
        texts = nearest_texts(self.prior, merged["x"])
        lines = [json.dumps({"round": int(r), "score": float(y), **t}) for r, y, t in zip(merged["round"], merged["y"], texts)]
        atomic_write_text(self.root / "evaluations.jsonl", "\n".join(lines) + "\n")

    # ---- proposals ----------------------------------------------------------------------
    def next_proposal(self, q: int | None = None) -> Proposal:
        """The initial design (first call) or the method's next q candidates, never past the budget."""
        history = self.history()
        left = self.config.budget - history.n
        if left <= 0:
            raise ConfigError(f"{self.root}: the budget of {self.config.budget} evaluations is spent; raise --budget to go on")
        seed = derived_seed(self.config.seed, "propose", history.n)
        if history.n == 0:
            return _head(self.method.initial(min(self.config.n_init, left), seed), left)
        return _head(self.method.propose(history, min(q or self.config.q, left), seed), left)

    def run(self, objective: Callable[[np.ndarray], np.ndarray], stop_after: int | None = None, on_round=None) -> History:
        """Propose, score and record until the budget is spent (or ``stop_after`` evaluations in all)."""
        if (self.root / "pending.npz").exists():
            raise ConfigError(f"{self.root}: candidates are pending from `optimize ask`; tell their scores first")
        while self.n_evaluated < self.config.budget and (stop_after is None or self.n_evaluated < stop_after):
            proposal = self.next_proposal()
            x = self.prior.to_original(proposal.z)
            self.record(proposal, x, objective(x))
            if on_round is not None:
                on_round(self)
        return self.history()

    # ---- ask / tell ---------------------------------------------------------------------
    def ask(self, q: int | None = None) -> np.ndarray:
        """Write the next candidates to pending.{npz,npy,jsonl} (the same ones again while untold)."""
        path = self.root / "pending.npz"
        if path.exists():
            with np.load(path) as data:
                return data["x"]
        proposal = self.next_proposal(q)
        x = self.prior.to_original(proposal.z)
        lines = [json.dumps({"candidate": i, **t}) for i, t in enumerate(nearest_texts(self.prior, x))]
        atomic_save_npy(self.root / "pending.npy", x)
        atomic_write_text(self.root / "pending.jsonl", "\n".join(lines) + "\n")
        atomic_save_npz(path, x=x, noise=proposal.noise.float().numpy(), train_row=proposal.train_row)
        return x

    def tell(self, scores: np.ndarray, candidates: np.ndarray | None = None) -> None:
        """Record the scores [q] of the pending candidates (or of ``candidates`` [q, D], original space)."""
        path = self.root / "pending.npz"
        if not path.exists():
            raise DataError(f"{self.root}: no candidates pending; run `flowstudy optimize ask {self.root}` first")
        with np.load(path) as data:
            pending = {k: data[k] for k in data.files}
        x = pending["x"] if candidates is None else _check_candidates(candidates, self.prior.dim)
        y = _check_scores(scores, x.shape[0])
        if candidates is None:
            proposal = Proposal(torch.zeros(0), torch.from_numpy(pending["noise"]), pending["train_row"])
        else:
            proposal = Proposal.without_noise(torch.zeros(len(y), self.prior.dim))
        self.record(proposal, x, y)
        for name in ("pending.npz", "pending.npy", "pending.jsonl"):
            (self.root / name).unlink(missing_ok=True)


def _head(proposal: Proposal, n: int) -> Proposal:
    return Proposal(proposal.z[:n], proposal.noise[:n], proposal.train_row[:n])


def _comparable(config: LoopConfig) -> dict:
    return {k: v for k, v in asdict(config).items() if k != "budget"}


def _diff(a: LoopConfig, b: LoopConfig) -> str:
    da, db = _comparable(a), _comparable(b)
    return ", ".join(f"{k}: {da[k]!r} there, {db[k]!r} now" for k in da if da[k] != db[k])


def _check_scores(scores: np.ndarray, n: int) -> np.ndarray:
    y = np.asarray(scores, dtype=np.float64)
    if y.ndim != 1:
        raise DataError(f"scores must be a flat list of {n} numbers; got shape {y.shape}")
    if len(y) != n:
        raise DataError(f"expected {n} scores (one per pending candidate); got {len(y)}")
    bad = np.flatnonzero(~np.isfinite(y))
    if len(bad):
        raise DataError(f"scores must be finite numbers; rows {bad.tolist()} are NaN or infinite")
    return y


def _check_candidates(candidates: np.ndarray, dim: int) -> np.ndarray:
    x = np.asarray(candidates, dtype=np.float32)
    if x.ndim != 2 or x.shape[1] != dim:
        raise DataError(f"candidates must have shape [n, {dim}]; got {x.shape}")
    bad = np.flatnonzero(~np.isfinite(x).all(axis=1))
    if len(bad):
        raise DataError(f"candidates rows {bad.tolist()} hold NaN or infinite values")
    return x


def read_scores(text_or_path: str) -> np.ndarray:
    """Scores from a file (.npy; .json list; .txt/.csv one per line or comma-separated) or an inline
    comma-separated list such as ``0.5,0.7,0.1,0.2``. Empty entries become NaN (caught by ``tell``)."""
    path = Path(text_or_path)
    if path.suffix == ".npy" and path.exists():
        return np.load(path, allow_pickle=False)
    text = path.read_text() if path.exists() else text_or_path
    if path.suffix == ".json" and path.exists():
        return np.asarray(json.loads(text), dtype=np.float64)
    tokens = [t.strip() for t in text.replace("\n", ",").strip().strip(",").split(",")]
    values = []
    for i, token in enumerate(tokens):
        try:
            values.append(float(token) if token else float("nan"))
        except ValueError:
            raise DataError(f"score {i} ({token!r}) in {text_or_path[:60]!r} is not a number") from None
    return np.asarray(values)
