"""``guided``: GP-guided flow sampling from a noise-space trust region, ranked by the acquisition.

Each round fits the GP, draws ``n_candidates`` noises — ``tr_fraction`` of them pCN perturbations
of the best evaluated points' noises (:func:`~flowstudy.guidance.methods.base.trust_region_noise`),
the rest fresh — integrates each with the guided field (:mod:`flowstudy.guidance.sampler`) and
proposes the q best end points under the acquisition. ``tr_fraction = 0`` is guidance alone;
``strength = 0`` is the trust region alone.
"""

from __future__ import annotations

import torch

from flowstudy.guidance.history import History, Proposal
from flowstudy.guidance.methods.base import Method, Problem, candidate_noise, top
from flowstudy.guidance.sampler import GuidanceConfig, guided_sample


class GuidedMethod(Method):
    name = "guided"

    def __init__(
        self,
        problem: Problem,
        n_candidates: int = 512,
        tr_fraction: float = 0.75,
        tr_best: int = 4,
        tr_sigma: tuple[float, float] = (0.3, 0.7),
        rank_acquisition: str = "ucb",
        rank_beta: float = 1.0,
        **guidance: object,
    ) -> None:
        super().__init__(problem)
        self.n_candidates, self.tr_fraction = n_candidates, tr_fraction
        self.tr = {"n_best": tr_best, "sigma": tuple(tr_sigma)}
        self.rank_acquisition, self.rank_beta = rank_acquisition, rank_beta
        self.guidance = GuidanceConfig(**guidance)

    def propose(self, history: History, q: int, seed: int) -> Proposal:
        surrogate = self.problem.fit(history, seed)
        noise = candidate_noise(history, self.n_candidates, seed, self.tr_fraction, **self.tr)
        z = guided_sample(self.problem.prior.velocity, noise, surrogate, self.guidance, steps=self.problem.steps).double()
        with torch.no_grad():
            pick = top(surrogate.acquisition(z, self.rank_acquisition, self.rank_beta), q)
        return Proposal.from_flow(z[pick], noise[pick])
