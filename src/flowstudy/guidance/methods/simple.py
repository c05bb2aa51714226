"""Baselines without a push: ``prior`` (best-of-N samples), ``pool`` (random training rows) and
``rank`` (prior samples ranked by the GP's acquisition, which isolates what guidance adds)."""

from __future__ import annotations

import numpy as np
import torch

from flowstudy.guidance.history import History, Proposal
from flowstudy.guidance.methods.base import Method, Problem, top
from flowstudy.guidance.sampler import draw_noise


class PriorMethod(Method):
    """q fresh samples of the flow per round; no model of the objective."""

    name = "prior"

    def propose(self, history: History, q: int, seed: int) -> Proposal:
        return self.initial(q, seed)


class PoolMethod(Method):
    """q training rows not yet tried, uniformly at random (also the initial design)."""

    name = "pool"

    def initial(self, n: int, seed: int) -> Proposal:
        return self._rows(np.zeros(0, dtype=np.int64), n, seed)

    def propose(self, history: History, q: int, seed: int) -> Proposal:
        return self._rows(history.train_row, q, seed)

    def _rows(self, used: np.ndarray, q: int, seed: int) -> Proposal:
        free = np.setdiff1d(np.arange(self.problem.train_z.shape[0]), used[used >= 0])
        rows = np.random.default_rng(seed).choice(free, size=min(q, len(free)), replace=False)
        return Proposal.without_noise(self.problem.train_z[torch.from_numpy(rows)], rows)


class RankMethod(Method):
    """The q best of ``n_candidates`` unguided prior samples under the acquisition."""

    name = "rank"

    def __init__(self, problem: Problem, n_candidates: int = 512, acquisition: str = "ucb", beta: float = 1.0) -> None:
        super().__init__(problem)
        self.n_candidates, self.acquisition, self.beta = n_candidates, acquisition, beta

    def propose(self, history: History, q: int, seed: int) -> Proposal:
        surrogate = self.problem.fit(history, seed)
        noise = draw_noise(self.n_candidates, self.problem.dim, seed)
        z = self.problem.decode(noise)
        with torch.no_grad():
            pick = top(surrogate.acquisition(z, self.acquisition, self.beta), q)
        return Proposal.from_flow(z[pick], noise[pick])
