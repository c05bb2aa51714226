"""A network's residual restricted to the top-k principal subspace of the Gaussian base field.

With the Gaussian base field (:mod:`flowstudy.flows.gaussian_base`) the velocity is
v = base + net. :class:`SubspaceResidual` confines the network to the span of the k
eigenvectors U_k [D, k] of the base covariance with the largest eigenvalues (the training rows'
top principal directions; Ledoit–Wolf shrinkage keeps the sample covariance's eigenvectors):

    v(x, t) = base(x, t) + α · U_k h(x, t),
    h(x, t) = net(y(x, t), t),  y = U_kᵀ (x - a(t)·mean) / s(t)     (reads = "subspace")
    h(x, t) = U_kᵀ net(x, t)                                        (reads = "full")

with s_j(t) = sqrt(a² λ_j + b² + g²) the Gaussian flow's marginal std along u_j, so the network
sees unit-variance coordinates at every t. In the base's eigenbasis the base is diagonal, so the
coordinates outside the subspace, U_⊥ᵀ x, obey dU_⊥ᵀx/dt = base only: they follow the exact
Gaussian flow whatever the network does. With reads = "subspace" the flow factorises,

    log p(x) = log N(U_⊥ᵀ x; U_⊥ᵀ mean, diag λ_⊥) + log p_k(U_kᵀ x),

so the model's likelihood differs from the Gaussian fit's only through the k-dimensional marginal
p_k: 800 training rows can teach a density in 32-128 directions, not in 1024. α = 0 is the
Gaussian fit itself.

The divergence is exact and cheap: tr ∂v/∂x = Σ_j gain_j(t) + α Σ_{j ≤ k} e_jᵀ (∂h/∂x) u_j, the
base's trace in closed form and k vector-Jacobian products for the network
(:meth:`SubspaceResidual.divergence`; used by :func:`flowstudy.metrics.likelihood.heldout_nll`).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from flowstudy.errors import ConfigError
from flowstudy.flows.gaussian_base import GaussianBaseField

RESIDUAL_INPUTS = ("subspace", "full")
"""What the network reads: the k whitened subspace coordinates, or the whole state x."""


def top_directions(base: GaussianBaseField, rank: int) -> tuple[Tensor, Tensor]:
    """U_k [D, k] and λ_k [k]: the base covariance's k largest eigenvalues and their eigenvectors,
    largest first."""
    d = base.eigvals.shape[0]
    if isinstance(rank, bool) or not isinstance(rank, int) or not 1 <= rank <= d:
        raise ConfigError(f"residual_rank must be an integer in [1, {d}]; got {rank!r}")
    order = torch.argsort(base.eigvals, descending=True)[:rank]
    return base.eigvecs[:, order], base.eigvals[order]


class SubspaceResidual(nn.Module):
    """v(x, t) = base(x, t) + scale · U_k h(x, t) (module docstring).

    net: ``forward(y, t)`` with y: [B, k] (reads = "subspace") or [B, D] (reads = "full");
    base: the run's :class:`GaussianBaseField`; rank: k; scale: α (a buffer, so a checkpoint keeps it).
    """

    def __init__(self, net: nn.Module, base: GaussianBaseField, rank: int, reads: str = "subspace", scale: float = 1.0):
        super().__init__()
        if reads not in RESIDUAL_INPUTS:
            raise ConfigError(f"residual_input must be one of {', '.join(RESIDUAL_INPUTS)}; got {reads!r}")
        self.net, self.base, self.rank, self.reads = net, base, rank, reads
        basis, lam = top_directions(base, rank)  # [D, k], [k]
        self.register_buffer("basis", basis)
        self.register_buffer("lam", lam)
        self.register_buffer("scale", torch.tensor(float(scale)))

    def coordinates(self, x: Tensor, t: Tensor) -> Tensor:
        """y = U_kᵀ (x - a·mean) / s(t): [B, k] from x [B, D], t [B]."""
        c = self.base.path.coefficients(t[:, None].float())  # [B, 1] each
        spread = (c.alpha**2 * self.lam[None, :] + c.beta**2 + c.gamma**2).sqrt()  # [B, k]
        return ((x.float() - c.alpha * self.base.mean) @ self.basis) / spread

    def residual(self, x: Tensor, t: Tensor) -> Tensor:
        """h(x, t): [B, k], the network's velocity in subspace coordinates (before α and U_k)."""
        if self.reads == "subspace":
            return self.net(self.coordinates(x, t), t).float()
        return self.net(x, t).float() @ self.basis

    def forward(self, x: Tensor, t: float | Tensor) -> Tensor:
        """x: [B, D], t: float or [B] -> [B, D] in x's dtype."""
        t = torch.as_tensor(t, device=x.device, dtype=torch.float32).reshape(-1).expand(x.shape[0])
        v = self.base(x, t).float() + self.scale * (self.residual(x, t) @ self.basis.T)
        return v.to(x.dtype)

    def divergence(self, x: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """v(x, t) [B, D] and its exact divergence [B]: the base's trace Σ_j gain_j(t) in closed
        form plus α Σ_j e_jᵀ (∂h/∂x) u_j from k vector-Jacobian products (vmapped)."""
        from torch.func import vjp, vmap

        t = torch.as_tensor(t, device=x.device, dtype=torch.float32).reshape(-1).expand(x.shape[0])
        b, k = x.shape[0], self.rank
        with torch.enable_grad():
            h, pullback = vjp(lambda y: self.residual(y, t), x.float())  # h: [B, k]
            cotangents = torch.eye(k, device=x.device, dtype=h.dtype)[:, None, :].expand(k, b, k)  # [k, B, k]
            rows = vmap(pullback)(cotangents)[0]  # [k, B, D]: e_jᵀ ∂h/∂x
        net_trace = torch.einsum("jbd,dj->b", rows, self.basis)  # Σ_j (e_jᵀ ∂h/∂x) u_j
        base_trace = self.base.gains(t)[0].sum(-1)  # [B]
        v = self.base(x, t).float() + self.scale * (h @ self.basis.T)
        return v.detach().to(x.dtype), (base_trace + self.scale * net_trace).detach().to(x.dtype)


def compose_field(net: nn.Module, base: GaussianBaseField | None, residual: dict | None) -> nn.Module:
    """The velocity field of a run: the network alone (no base), base + network
    (:class:`~flowstudy.flows.gaussian_base.WithBaseField`), or base + subspace residual
    (``residual`` = {"rank": k, "reads": ..., "scale": α}, what a checkpoint's ``residual`` holds)."""
    from flowstudy.flows.gaussian_base import WithBaseField

    if base is None:
        if residual is not None:
            raise ConfigError("a subspace residual (residual_rank) needs the Gaussian base field (base_field = 'gaussian')")
        return net
    if residual is None:
        return WithBaseField(net, base)
    return SubspaceResidual(net, base, **residual)


__all__ = ["RESIDUAL_INPUTS", "SubspaceResidual", "compose_field", "top_directions"]
