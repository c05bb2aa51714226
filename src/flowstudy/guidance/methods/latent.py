"""``latent``: Bayesian optimisation over the flow's noise space (Gomez-Bombarelli et al. 2018 style).

The GP models the score as a function of the source noise eps ~ N(0, I_D) that the ODE decodes;
candidates are fresh noises and pCN perturbations of the best noises, ranked by the acquisition in
noise space; only the q chosen are decoded.
"""

from __future__ import annotations

import torch

from flowstudy.guidance.history import History, Proposal
from flowstudy.guidance.methods.base import Method, Problem, candidate_noise, noise_box, top
from flowstudy.guidance.surrogate import Surrogate, box_map


class LatentMethod(Method):
    name = "latent"

    def __init__(self, problem: Problem, n_candidates: int = 512, tr_fraction: float = 0.75, beta: float = 1.0) -> None:
        super().__init__(problem)
        self.n_candidates, self.tr_fraction, self.beta = n_candidates, tr_fraction, beta
        self.input_map = box_map(*noise_box(problem.dim))

    def propose(self, history: History, q: int, seed: int) -> Proposal:
        rows = history.with_noise()
        surrogate = Surrogate.fit(history.noise[rows].double(), history.y[rows], self.input_map, self.problem.kernel, seed=seed)
        noise = candidate_noise(history, self.n_candidates, seed, self.tr_fraction)
        with torch.no_grad():
            pick = top(surrogate.acquisition(noise.double(), "ucb", self.beta), q)
        return Proposal.from_flow(self.problem.decode(noise[pick]), noise[pick])
