"""``recipe = "auto"``: choose the settings that matter for the data at hand by a short search.

The named recipes (:data:`flowstudy.train.config.RECIPES`) were tuned on 800 rows of SONAR
embeddings; on other data they can lose to their own baseline (a Gaussian fit). For any data
but the builtin SONAR set the default is a search over the settings that decide that — the base
field (the Gaussian fit's exact velocity, or none), the rank of the subspace the network acts in,
and the strength of the noise augmentation — among :data:`CANDIDATES`:

1. each candidate trains :data:`SEARCH_STEPS` optimiser steps, or the run's own length if that is
   shorter (the run's architecture, learning rate and batch size; its warm-up and decay scaled to
   the short run);
2. it is scored on up to :data:`SEARCH_ROWS` validation rows by two numbers, both in the
   standardised space and both beside the Gaussian fit of the training rows:
   - the validation NLL (nats per dimension; the field's exact structured divergence where it
     has one, else Hutchinson's estimator with fixed probes: :func:`flowstudy.train.selection.validation_nll`);
   - the sample distance: the median distance from as many samples (midpoint rule, 25 steps) to
     their nearest validation row — the numerator of the fidelity metric (lower is closer);
3. candidates are ranked on each; the one with the smallest sum of ranks is chosen (ties: the
   lower NLL). A candidate that fails (a network that cannot read its rank) is reported and skipped.

Settings the user gave (``recipe_fixed``) are not searched: candidates that differ from them are
dropped. The search costs about ``len(CANDIDATES) * SEARCH_STEPS`` steps: with the MLP on 2 CPU
cores about a minute (docs/results/zoo/NOTES.md). The choice and every candidate's scores are
written to ``RUN/recipe.json``.
"""

from __future__ import annotations

import dataclasses
import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from flowstudy.errors import ConfigError
from flowstudy.io import atomic_write_json
from flowstudy.train.config import RECIPE_SEARCHED

SEARCH_STEPS = 150
"""Optimiser steps of each candidate's short run."""

SEARCH_ROWS = 256
"""Validation rows (the first ones) each candidate is scored on, and samples it draws."""



@dataclass(frozen=True)
class Candidate:
    """One setting of the searched fields: Gaussian base field with a rank-k residual, or none."""

    base_field: str
    rank: int | None
    noise: float

    def settings(self, dim: int) -> dict[str, Any]:
        """The TrainConfig values of this candidate for data of dimension ``dim``."""
        gaussian = self.base_field == "gaussian"
        return {
            "base_field": self.base_field,
            "base_fit": "train" if gaussian else "augmented",
            "residual_rank": min(self.rank, dim) if gaussian and self.rank is not None else None,
            "aug": [f"noise:{self.noise:g}"] if self.noise > 0 else [],
        }

    def describe(self) -> str:
        """``base field gaussian, rank 64, noise 0.4`` (what the start of training prints)."""
        rank = f", rank {self.rank}" if self.rank is not None else ", whole space"
        return f"base field {self.base_field}{rank}, noise {self.noise:g}"


CANDIDATES: tuple[Candidate, ...] = (
    Candidate("gaussian", 16, 0.0),
    Candidate("gaussian", 64, 0.0),
    Candidate("gaussian", 64, 0.4),
    Candidate("gaussian", 128, 0.4),
    Candidate("gaussian", 128, 0.8),
    Candidate("none", None, 0.0),
)


@dataclass(frozen=True)
class CandidateScore:
    """A candidate's validation NLL (nats/dim) and sample distance, or why it was skipped."""

    candidate: Candidate
    val_nll: float = math.nan
    sample_distance: float = math.nan
    seconds: float = 0.0
    skipped: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"candidate": self.candidate.describe(), **{k: v for k, v in dataclasses.asdict(self).items() if k != "candidate"}}


@dataclass(frozen=True)
class RecipeChoice:
    """The chosen candidate, every candidate's scores and the Gaussian fit's, the search's time."""

    chosen: Candidate
    scores: tuple[CandidateScore, ...]
    gaussian_nll: float
    gaussian_distance: float
    steps: int  # of each candidate's short run
    seconds: float

    def message(self) -> str:
        """One line for the start of training: what was chosen, by what, among how many."""
        best = next(s for s in self.scores if s.candidate == self.chosen)
        scored = sum(s.skipped is None for s in self.scores)
        return (
            f"recipe: {self.chosen.describe()} -- chosen by val NLL and sample distance among {scored} candidates "
            f"(val NLL {best.val_nll:.3f} nats/dim vs the Gaussian fit's {self.gaussian_nll:.3f}; sample distance "
            f"{best.sample_distance:.3f} vs {self.gaussian_distance:.3f}; {self.steps} steps each, {self.seconds:.0f} s)"
        )

    def to_dict(self) -> dict[str, Any]:
        """What ``RUN/recipe.json`` holds."""
        return {
            "chosen": self.chosen.describe(),
            "message": self.message(),
            "search_steps": self.steps,
            "search_rows": SEARCH_ROWS,
            "gaussian_fit": {"val_nll": self.gaussian_nll, "sample_distance": self.gaussian_distance},
            "candidates": [s.to_dict() for s in self.scores],
            "seconds": self.seconds,
        }


def candidates_for(config, dim: int) -> list[Candidate]:
    """:data:`CANDIDATES` that agree with the base field and rank the user fixed
    (``config.recipe_fixed``), one per distinct setting at dimension ``dim`` once the user's
    fixed augmentation and base fit are laid over them."""
    filtering = [key for key in ("base_field", "residual_rank") if key in config.recipe_fixed]
    kept, seen = [], set()
    for candidate in CANDIDATES:
        settings = candidate.settings(dim)
        if any(getattr(config, key) != settings[key] for key in filtering):
            continue
        key = tuple(str(getattr(config, k) if k in config.recipe_fixed else settings[k]) for k in RECIPE_SEARCHED)
        if key not in seen:
            seen.add(key)
            kept.append(candidate)
    return kept


def apply_choice(config, candidate: Candidate, dim: int):
    """``config`` with the candidate's settings, the user's fixed ones kept."""
    settings = {k: v for k, v in candidate.settings(dim).items() if k not in config.recipe_fixed}
    return dataclasses.replace(config, **settings)


def choose_recipe(config, run_dir: str | Path, *, trainer: Callable, message: Callable[[str], None] = print):
    """Run the search for ``config`` (a TrainConfig with ``recipe = "auto"``); write
    ``run_dir/recipe.json``; print its :meth:`RecipeChoice.message`; return the config to train.

    ``trainer``: the Trainer class that trains each candidate's short run (passed in by the trainer
    itself, so that this module does not import it back)."""
    from flowstudy.data.resolve import load_config_splits

    started = time.perf_counter()
    train, val = load_config_splits(config)
    dim = train.dim
    candidates = candidates_for(config, dim)
    if not candidates:  # the user fixed what the search would choose (e.g. a rank of their own): theirs stands
        message(f"recipe: as given ({', '.join(config.recipe_fixed)} set; no candidate of the search agrees with them)")
        return config
    if len(candidates) == 1:
        return apply_choice(config, candidates[0], dim)
    steps = min(SEARCH_STEPS, config.total_steps(train.n))
    message(f"recipe auto: trying {len(candidates)} settings for {steps} steps each ...")
    with tempfile.TemporaryDirectory(prefix="flowstudy-recipe-") as tmp:
        scores = [_score(config, candidate, dim, steps, Path(tmp) / f"c{i}", trainer) for i, candidate in enumerate(candidates)]
    scored = [s for s in scores if s.skipped is None]
    if not scored:
        raise ConfigError("recipe auto: every candidate failed: " + "; ".join(f"{s.candidate.describe()}: {s.skipped}" for s in scores))
    gaussian_nll, gaussian_distance = _gaussian_scores(config, train, val)
    choice = RecipeChoice(_best(scored), tuple(scores), gaussian_nll, gaussian_distance, steps, time.perf_counter() - started)
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    atomic_write_json(Path(run_dir) / "recipe.json", choice.to_dict())
    message(choice.message())
    return apply_choice(config, choice.chosen, dim)


def _best(scored: list[CandidateScore]) -> Candidate:
    """The candidate with the smallest sum of its NLL rank and sample-distance rank (ties: lower NLL)."""
    by_nll = sorted(scored, key=lambda s: s.val_nll)
    by_distance = sorted(scored, key=lambda s: s.sample_distance)
    rank = {id(s): by_nll.index(s) + by_distance.index(s) for s in scored}
    return min(scored, key=lambda s: (rank[id(s)], s.val_nll)).candidate


def _score(config, candidate: Candidate, dim: int, steps: int, folder: Path, trainer: Callable) -> CandidateScore:
    """Train ``candidate`` for ``steps`` steps in ``folder``; score its EMA field."""
    from flowstudy.train.selection import validation_nll

    started = time.perf_counter()
    short = dataclasses.replace(
        apply_choice(config, candidate, dim), recipe="none", steps=steps, epochs=None, val_every=steps,
        patience=None, residual_scales=[], select_by="loss", tracker=None,
    )
    try:
        run = trainer(short, folder, progress=False)
        run.fit()
    except ConfigError as err:
        return CandidateScore(candidate, skipped=str(err))
    val = run.val_x1[:SEARCH_ROWS]
    with torch.no_grad():
        samples = _samples(run.ema_field, val.shape[0], val.shape[1], config.seed, val.device)
    nll = validation_nll(run.ema_field, val, seed=config.seed)
    return CandidateScore(candidate, nll, _median_nn(samples, val), time.perf_counter() - started)


def _samples(field, n: int, dim: int, seed: int, device) -> torch.Tensor:
    """n samples [n, D] of ``field`` (noise at t = 0), midpoint rule, 25 steps."""
    from flowstudy.solvers import solve

    generator = torch.Generator(device="cpu").manual_seed(seed + 20_011)
    x0 = torch.randn(n, dim, generator=generator).to(device)
    return solve(field, x0, 0.0, 1.0, "midpoint", 25).x


def _median_nn(samples: torch.Tensor, reference: torch.Tensor) -> float:
    """Median over samples of the Euclidean distance to the nearest reference row."""
    return float(torch.cdist(samples.float(), reference.float()).min(1).values.median())


def _gaussian_scores(config, train, val) -> tuple[float, float]:
    """The Ledoit-Wolf Gaussian fit of the standardised training rows (EmbeddingSets ``train``,
    ``val`` as the trainer reads them): its validation NLL and sample distance."""
    from flowstudy.data import Standardizer
    from flowstudy.metrics.likelihood import gaussian_fit, gaussian_log_prob

    space = Standardizer.fit(torch.from_numpy(train.embeddings), floor_ratio=config.std_floor)
    x, v = space.transform(torch.from_numpy(train.embeddings)).double(), space.transform(torch.from_numpy(val.embeddings[:SEARCH_ROWS])).double()
    mean, vecs, lam, _ = gaussian_fit(x)
    nll = float(-gaussian_log_prob(v, mean, vecs, lam).mean()) / x.shape[1]
    generator = torch.Generator().manual_seed(config.seed + 20_011)
    z = torch.randn(v.shape[0], x.shape[1], generator=generator, dtype=torch.float64)
    return nll, _median_nn(mean + (z * lam.clamp_min(0).sqrt()) @ vecs.T, v)


__all__ = ["CANDIDATES", "SEARCH_ROWS", "SEARCH_STEPS", "Candidate", "CandidateScore", "RecipeChoice", "choose_recipe"]
