"""``linear``: Thompson sampling of a Bayesian linear surrogate over many principal directions,
proposals on the data's norm shell, made real by the flow.

The GP of ``guided`` sees 32 whitened principal components, and a surrogate confined to them is
capped by what those components can express (:mod:`flowstudy.guidance.bounds`: 0.80 for the
cosine benchmark's targets). For candidates of similar norm a smooth objective of the embedding's
direction (a cosine, a topic score, a linear reward) is close to linear in that direction, and a
linear model needs one evaluation per direction, not a neighbourhood per direction. So each round:

1. fit :class:`~flowstudy.guidance.surrogate.LinearSurrogate` to the evaluations' features on the
   top-``k`` uncentred principal directions of the training rows
   (:class:`~flowstudy.guidance.surrogate.DirectionBasis`), with prior variance ``moments^alpha``
   per direction (directions the data uses little get small weights until evaluations say
   otherwise);
2. take q weight vectors: the posterior mean ``n_mean`` times, the rest Thompson draws whose spread
   is scaled by ``temperature`` (Russo & Van Roy 2014; exploring along every direction the model sees);
3. turn each into the point of the training rows' mean norm that maximises it (its direction);
4. make it a sample of the prior: invert it through the flow to its noise (the ODE backward),
   take a preconditioned Crank–Nicolson step of size ``pcn`` there, and decode. Every proposal is
   thus the flow's image of a noise, at the norm of real rows.
"""

from __future__ import annotations

from functools import cached_property

import torch
from torch import Tensor

from flowstudy.errors import ConfigError
from flowstudy.guidance.history import History, Proposal
from flowstudy.guidance.methods.base import Method, Problem, pcn_step
from flowstudy.guidance.surrogate import DirectionBasis, LinearSurrogate


class LinearMethod(Method):
    name = "linear"

    def __init__(
        self, problem: Problem, k: int = 128, alpha: float = 1.0, temperature: float = 0.5, n_mean: int = 1, pcn: float = 0.1
    ) -> None:
        super().__init__(problem)
        if not 0 <= pcn <= 1 or temperature < 0 or n_mean < 0 or alpha < 0:
            got = f"{pcn}, {temperature}, {n_mean}, {alpha}"
            raise ConfigError(f"linear: needs 0 <= pcn <= 1, temperature >= 0, n_mean >= 0, alpha >= 0; got {got}")
        self.k, self.alpha, self.temperature, self.n_mean, self.pcn = k, alpha, temperature, n_mean, pcn

    @cached_property
    def basis(self) -> DirectionBasis:
        """The top-k directions, k at most the training matrix's smaller side (small data sets)."""
        rows = torch.from_numpy(self.problem.prior.train.embeddings)
        return DirectionBasis.fit(rows, min(self.k, *rows.shape))

    def fit(self, history: History) -> LinearSurrogate:
        """The linear surrogate on every evaluation so far."""
        prior_var = (self.basis.moments / self.basis.moments[0]) ** self.alpha  # [k]
        features = self.basis.features(torch.from_numpy(self.problem.prior.to_original(history.z)))  # [n, k]
        return LinearSurrogate.fit(features, history.y, prior_var)

    def targets(self, history: History, q: int, generator: torch.Generator) -> Tensor:
        """The q points [q, D] (original space) the round aims at: surrogate maxima on the shell."""
        surrogate = self.fit(history)
        n_mean = min(self.n_mean, q)
        weights = torch.cat([surrogate.mean.expand(n_mean, -1), surrogate.sample_weights(q - n_mean, generator, self.temperature)])
        return self.basis.point(weights)

    def propose(self, history: History, q: int, seed: int) -> Proposal:
        generator = torch.Generator().manual_seed(seed)
        z = self.problem.prior.to_std(self.targets(history, q, generator).numpy())  # [q, D]
        noise = self.problem.encode(z)
        noise = pcn_step(noise, self.pcn, torch.randn(noise.shape, generator=generator))
        return Proposal.from_flow(self.problem.decode(noise), noise)


__all__ = ["LinearMethod"]
