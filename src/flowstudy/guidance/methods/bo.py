"""Plain Bayesian optimisation in the standardised embedding space, without the flow.

- ``bo``: BoTorch's qLogEI maximised by ``optimize_acqf`` over the box spanned by the training rows
  (all D coordinates; the dimension-scaled prior makes this the strong high-dimensional baseline of
  Hvarfner et al. 2024).
- ``turbo``: TuRBO-1 (Eriksson et al. 2019): a box trust region around the best point, side
  ``length`` scaled per dimension by the GP's lengthscales, grown after ``succ_tol`` improving
  rounds and halved after ``fail_tol`` failing ones; candidates perturb a random subset of the
  centre's coordinates; Thompson sampling picks q. The region's size is replayed from the history
  at every round, so the method has no state of its own and resumes exactly.
"""

from __future__ import annotations

import math
import warnings

import torch

from flowstudy.guidance.history import History, Proposal
from flowstudy.guidance.methods.base import Method, Problem
from flowstudy.guidance.surrogate import unmap_box


class BoMethod(Method):
    name = "bo"

    def __init__(self, problem: Problem, num_restarts: int = 4, raw_samples: int = 256, maxiter: int = 50) -> None:
        super().__init__(problem)
        self.num_restarts, self.raw_samples, self.maxiter = num_restarts, raw_samples, maxiter

    def propose(self, history: History, q: int, seed: int) -> Proposal:
        from botorch.acquisition.logei import qLogExpectedImprovement
        from botorch.optim import optimize_acqf

        input_map = self.problem.full_map
        surrogate = self.problem.fit(history, seed, input_map)
        acq = qLogExpectedImprovement(surrogate.model, best_f=surrogate.best_f)
        bounds = torch.stack([torch.zeros(input_map.dim), torch.ones(input_map.dim)]).double()
        torch.manual_seed(seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            u, _ = optimize_acqf(
                acq, bounds, q=q, num_restarts=self.num_restarts, raw_samples=self.raw_samples, options={"maxiter": self.maxiter}
            )
        return Proposal.without_noise(unmap_box(input_map, u.detach()))


def turbo_length(history: History, q: int, dim: int, init: float = 0.8, lo: float = 0.5**7, hi: float = 1.6, succ_tol: int = 3) -> float:
    """Side length of TuRBO's region after the rounds in ``history`` (restarts at ``init`` below ``lo``)."""
    fail_tol = math.ceil(max(4.0 / q, dim / q))
    length, succ, fail = init, 0, 0
    y, rounds = history.y.numpy(), history.round
    for r in range(1, int(rounds.max(initial=0)) + 1):
        before, now = y[rounds < r], y[rounds == r]
        if len(now) == 0 or len(before) == 0:
            continue
        if now.max() > before.max() + 1e-3 * abs(before.max()):
            succ, fail = succ + 1, 0
        else:
            succ, fail = 0, fail + 1
        if succ == succ_tol:
            length, succ = min(2.0 * length, hi), 0
        elif fail == fail_tol:
            length, fail = length / 2.0, 0
        if length < lo:
            length = init
    return length


class TurboMethod(Method):
    name = "turbo"

    def __init__(self, problem: Problem, n_candidates: int = 512) -> None:
        super().__init__(problem)
        self.n_candidates = n_candidates

    def propose(self, history: History, q: int, seed: int) -> Proposal:
        input_map = self.problem.full_map
        surrogate = self.problem.fit(history, seed, input_map)
        dim = input_map.dim
        length = turbo_length(history, q, dim)
        centre = input_map(history.z[history.best(1)])[0]  # [D] in the unit box
        ls = _lengthscales(surrogate.model, dim)
        weights = ls / ls.prod().pow(1.0 / dim)
        lo = (centre - weights * length / 2).clamp(0, 1)
        hi = (centre + weights * length / 2).clamp(0, 1)
        gen = torch.Generator().manual_seed(seed)
        raw = lo + (hi - lo) * torch.rand(self.n_candidates, dim, generator=gen, dtype=torch.float64)
        mask = torch.rand(self.n_candidates, dim, generator=gen) <= min(1.0, 20.0 / dim)
        mask[torch.arange(self.n_candidates), torch.randint(dim, (self.n_candidates,), generator=gen)] = True
        u = torch.where(mask, raw, centre.expand_as(raw))  # [n, D]
        torch.manual_seed(seed)
        with torch.no_grad():
            draws = surrogate.model.posterior(u).rsample(torch.Size([q])).squeeze(-1)  # [q, n]
        pick = _distinct_argmax(draws)
        return Proposal.without_noise(unmap_box(input_map, u[pick]))


def _lengthscales(model, dim: int) -> torch.Tensor:
    covar = model.covar_module
    base = covar.kernels[0] if hasattr(covar, "kernels") else covar
    base = getattr(base, "base_kernel", base)
    return base.lengthscale.detach().reshape(-1).double().expand(dim)


def _distinct_argmax(draws: torch.Tensor) -> torch.Tensor:
    """For each Thompson draw [q, n], its best candidate not already picked -> [q]."""
    picked: list[int] = []
    for row in draws:
        order = torch.argsort(row, descending=True).tolist()
        picked.append(next(i for i in order if i not in picked))
    return torch.tensor(picked)


__all__ = ["BoMethod", "TurboMethod", "turbo_length"]
