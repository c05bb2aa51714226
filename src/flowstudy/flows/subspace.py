"""A network's residual restricted to the top-k principal subspace of the Gaussian base field.

With the Gaussian base field (:mod:`flowstudy.flows.gaussian_base`) the velocity is
v = base + net. Here the network is confined to the span of the k eigenvectors U_k [D, k] of the
base covariance with the largest eigenvalues λ_k (the training rows' top principal directions;
Ledoit–Wolf shrinkage keeps the sample covariance's eigenvectors):

    v(x, t) = base(x, t) + α · U_k h(x, t),
    h(x, t) = net(y, t),  y = U_kᵀ x / s(t)         (reads = "subspace": net maps k -> k)
    h(x, t) = U_kᵀ net(x, t)                         (reads = "full": net maps D -> D)

with s_j(t) = sqrt(t² λ_j + (1 - t)²), the spread of the straight-path Gaussian flow along u_j, a
fixed input normalisation so the network sees unit-variance coordinates at every t (data are
standardised, so the base's mean is ~0). In the base's eigenbasis the base is diagonal, so the
coordinates outside the subspace, U_⊥ᵀ x, obey d(U_⊥ᵀ x)/dt = U_⊥ᵀ base only: they follow the
exact Gaussian flow whatever the network does. With reads = "subspace" the flow factorises,

    log p(x) = log N(U_⊥ᵀ x; U_⊥ᵀ mean, diag λ_⊥) + log p_k(U_kᵀ x),

so the model's likelihood differs from the Gaussian fit's only through the k-dimensional marginal
p_k: 800 training rows can teach a density in 32-128 directions, not in 1024. α = 0 is the
Gaussian fit itself.

:class:`SubspaceNet` is the network part, x -> α U_k h(x, t), a D -> D module whose U_k, λ_k and α
are buffers: it is what the trainer optimises (so stacked training groups, which stack each
member's parameters and buffers, train it as they train any network), and
:class:`SubspaceResidual` = base + SubspaceNet is the run's velocity field. Its divergence is
exact and cheap: tr ∂v/∂x = Σ_j gain_j(t) + α Σ_{j ≤ k} e_jᵀ (∂h/∂x) u_j, the base's trace in
closed form and k vector-Jacobian products (:meth:`SubspaceResidual.divergence`, used by
:func:`flowstudy.metrics.likelihood.heldout_nll`).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from flowstudy.errors import ConfigError
from flowstudy.flows.divergence import Jacobian
from flowstudy.flows.gaussian_base import GaussianBaseField, WithBaseField, times_per_row

RESIDUAL_INPUTS = ("subspace", "full")
"""What the network reads: the k whitened subspace coordinates, or the whole state x."""


def check_rank(rank: int) -> int:
    """``residual_rank`` itself, or a ConfigError: the one check of it (a training configuration's
    and every residual's)."""
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise ConfigError(f"residual_rank must be an integer >= 1; got {rank!r}")
    return rank


def effective_rank(rank: int, dim: int) -> int:
    """k = min(rank, D): a rank of D or more is the whole space (so one recipe fits any D)."""
    return min(check_rank(rank), dim)


def top_directions(base: GaussianBaseField, rank: int) -> tuple[Tensor, Tensor]:
    """U_k [D, k] and λ_k [k]: the base covariance's k = min(rank, D) largest eigenvalues and
    their eigenvectors, largest first."""
    rank = effective_rank(rank, base.eigvals.shape[0])
    order = torch.argsort(base.eigvals, descending=True)[:rank]
    return base.eigvecs[:, order], base.eigvals[order]


class SubspaceNet(nn.Module):
    """x -> α · U_k h(x, t) (module docstring): [B, D] -> [B, D].

    net: ``forward(y, t)`` with y: [B, k] (reads = "subspace") or [B, D] (reads = "full");
    basis: U_k [D, k]; lam: λ_k [k]; scale: α. The three are non-persistent buffers: the
    checkpoint's ``residual`` and base field rebuild them (:meth:`around`), the weights are the net's.
    """

    def __init__(self, net: nn.Module, basis: Tensor, lam: Tensor, reads: str = "subspace", scale: float = 1.0):
        super().__init__()
        if reads not in RESIDUAL_INPUTS:
            raise ConfigError(f"residual_input must be one of {', '.join(RESIDUAL_INPUTS)}; got {reads!r}")
        self.net, self.reads, self.rank = net, reads, basis.shape[1]
        self.register_buffer("basis", basis.float().clone(), persistent=False)
        self.register_buffer("lam", lam.float().clone(), persistent=False)
        self.register_buffer("scale", torch.tensor(float(scale)), persistent=False)

    @classmethod
    def around(cls, net: nn.Module, base: GaussianBaseField, rank: int, reads: str = "subspace", scale: float = 1.0) -> SubspaceNet:
        """The residual of ``net`` in the top ``rank`` directions of ``base``."""
        basis, lam = top_directions(base, rank)
        return cls(net, basis, lam, reads, scale)

    @property
    def arch(self) -> str:
        return self.net.arch

    @property
    def config(self) -> dict:
        return self.net.config

    def coordinates(self, x: Tensor, t: Tensor) -> Tensor:
        """h(x, t) [B, k]: the network's velocity in subspace coordinates (before α and U_k)."""
        if self.reads == "full":
            return self.net(x, t).float() @ self.basis
        return self.read(x.float() @ self.basis, t)

    def read(self, y: Tensor, t: Tensor) -> Tensor:
        """h [B, k] from the subspace coordinates y = U_kᵀ x [B, k] (reads = "subspace"), t: [B]."""
        with torch.autocast(y.device.type, enabled=False):
            spread = (t.float()[:, None] ** 2 * self.lam[None, :] + (1 - t.float()[:, None]) ** 2).sqrt()  # [B, k]
        return self.net(y.float() / spread, t.float()).float()  # the network keeps any autocast around it

    def forward(self, x: Tensor, t: float | Tensor) -> Tensor:
        """x: [B, D], t: float or [B] -> [B, D] in x's dtype."""
        t = times_per_row(t, x)
        return (self.scale * (self.coordinates(x, t) @ self.basis.T)).to(x.dtype)

    def in_eigenbasis(self) -> EigenSubspaceNet:
        """This residual in the base's eigen-coordinates (:class:`EigenSubspaceNet`); it shares the
        network, so training it trains this module."""
        if self.reads != "subspace":
            raise ValueError("only a residual that reads the subspace coordinates has an eigenbasis form")
        return EigenSubspaceNet(self.net, self.basis, self.lam, self.reads, float(self.scale))


class EigenSubspaceNet(SubspaceNet):
    """A :class:`SubspaceNet` in the coordinates w = Rᵀx of its base's eigenvectors (largest
    eigenvalue first), where U_k is the first k axes: w -> α [h(w_{:k}, t), 0], no [B, D] x [D, k]
    product. Same parameters and buffers (names included) as the SubspaceNet it comes from
    (:meth:`SubspaceNet.in_eigenbasis`), so stacked groups stack it alike."""

    def coordinates(self, w: Tensor, t: Tensor) -> Tensor:
        """h [B, k] from the eigen-coordinates w [B, D] (t: [B])."""
        return self.read(w[:, : self.rank], t)

    def forward(self, w: Tensor, t: float | Tensor) -> Tensor:
        """w: [B, D] eigen-coordinates (or their first k alone, as a training step on the leading
        coordinates passes them), t: float or [B] -> w's shape in w's dtype."""
        h = self.scale * self.coordinates(w, times_per_row(t, w))  # [B, k]
        return torch.nn.functional.pad(h, (0, w.shape[1] - self.rank)).to(w.dtype)


class SubspaceResidual(WithBaseField):
    """v(x, t) = base(x, t) + net(x, t) with ``net`` a :class:`SubspaceNet`, and its exact divergence."""

    @classmethod
    def around(cls, net: nn.Module, base: GaussianBaseField, rank: int, reads: str = "subspace", scale: float = 1.0) -> SubspaceResidual:
        """base + α U_k h for a plain network ``net`` (:meth:`SubspaceNet.around`)."""
        return cls(SubspaceNet.around(net, base, rank, reads, scale), base)

    @property
    def scale(self) -> Tensor:
        """α (the network's buffer; fill it to change the scale)."""
        return self.net.scale

    def divergence(self, x: Tensor, t: Tensor, functional: bool = True) -> tuple[Tensor, Tensor]:
        """v(x, t) [B, D] and its exact divergence [B]: the base's trace Σ_j gain_j(t) in closed
        form plus α Σ_j e_jᵀ (∂h/∂x) u_j from k vector-Jacobian products (vmapped by torch.func;
        ``functional=False``: plain autograd, for networks torch.func refuses, such as mamba_ssm's
        fused scan)."""
        t = times_per_row(t, x)
        b, k, basis = x.shape[0], self.net.rank, self.net.basis
        jac = Jacobian(self.net.coordinates, x.float(), t, functional)  # h: [B, k]
        cotangents = torch.eye(k, device=x.device, dtype=jac.v.dtype)[:, None, :].expand(k, b, k)  # [k, B, k]
        rows = jac(cotangents)  # [k, B, D]: e_jᵀ ∂h/∂x
        net_trace = torch.einsum("jbd,dj->b", rows, basis)  # Σ_j (e_jᵀ ∂h/∂x) u_j
        base_trace = self.base.gains(t)[0].sum(-1)  # [B]
        v = self.base(x, t).float() + self.net.scale * (jac.v.detach() @ basis.T)
        return v.detach().to(x.dtype), (base_trace + self.net.scale * net_trace).detach().to(x.dtype)


class EigenbasisFlow:
    """A :class:`SubspaceResidual` (reads = "subspace") in the base's eigenbasis, for sampling.

    In coordinates w = Rᵀ x, R = the base's eigenvectors with U_k first, the field is

        dw/dt = (w - a(t) m̃) ⊙ gain(t) + a'(t) m̃ + α [h(w_{:k}, t), 0],   m̃ = Rᵀ mean:

    elementwise apart from the network on the first k coordinates. The plain field spends two
    [B, D] x [D, D] products of the base per evaluation (more than a 0.5 M-parameter network at
    D = 1024); here the state is rotated once before the solve and once after it. Runge-Kutta
    steps commute with a fixed rotation, so a fixed-step solve gives the plain solve's samples up
    to float rounding.

    The first k coordinates do not depend on the others (:meth:`subspace_velocity`), and each of
    the other D - k follows a linear ODE of its own (:meth:`complement_velocity`). A fixed-step
    Runge-Kutta solve of a linear ODE is an affine map of its start, w₁ = P ⊙ w₀ + Q, the same for
    every row: :meth:`complement_map` finds P and Q by solving two rows, and :meth:`solve` then
    integrates only the k network coordinates per batch.
    """

    def __init__(self, field: SubspaceResidual):
        net, k = field.net, field.net.rank
        self.base = field.base.in_eigenbasis()  # elementwise in w
        self.rotation = self.base.eigvecs  # [D, D]: U_k, then the rest
        if net.reads != "subspace" or not torch.allclose(self.rotation[:, :k], net.basis, atol=1e-6):
            raise ValueError("EigenbasisFlow needs a residual that reads the base's own top-k coordinates")
        self.field, self.k = field, k

    @classmethod
    def of(cls, model: nn.Module) -> EigenbasisFlow | None:
        """The eigenbasis form of ``model``, or None where it has none (not a subspace residual
        reading the subspace coordinates)."""
        if isinstance(model, SubspaceResidual) and model.net.reads == "subspace":
            try:
                return cls(model)
            except ValueError:
                return None
        return None

    def to_eigen(self, x: Tensor) -> Tensor:
        return x.float() @ self.rotation

    def from_eigen(self, w: Tensor) -> Tensor:
        return w.float() @ self.rotation.T

    def subspace_velocity(self, w: Tensor, t: float | Tensor) -> Tensor:
        """dw/dt of the first k coordinates [B, k] from them alone (w: [B, k])."""
        t = times_per_row(t, w)
        return self.base(w.float(), t, slice(0, self.k)) + self.field.net.scale * self.field.net.read(w, t)

    def complement_velocity(self, w: Tensor, t: float | Tensor) -> Tensor:
        """dw/dt of the other D - k coordinates [B, D - k] (w: [B, D - k]): the base alone."""
        return self.base(w.float(), t, slice(self.k, None))

    def complement_map(self, method: str, steps: int) -> tuple[Tensor, Tensor]:
        """P, Q [D - k] with solve(complement, w₀) = P ⊙ w₀ + Q for the fixed-step ``method``
        from t = 0 to 1, from the solves of the rows 0 and 1."""
        from flowstudy.solvers import solve

        rows = torch.zeros(2, self.base.mean.shape[0] - self.k, device=self.base.mean.device)
        rows[1] = 1.0
        end = solve(self.complement_velocity, rows, 0.0, 1.0, method=method, steps=steps).x.float()
        return end[1] - end[0], end[0]

    def solve(self, w0: Tensor, solve_subspace, complement: tuple[Tensor, Tensor]) -> Tensor:
        """w₁ [B, D] from w₀ [B, D]: ``solve_subspace`` ([B, k] -> [B, k], e.g. a GraphSolver of
        :meth:`subspace_velocity`) on the first k coordinates, ``complement`` = (P, Q) of
        :meth:`complement_map` on the others."""
        p, q = complement
        return torch.cat([solve_subspace(w0[:, : self.k]).float(), w0[:, self.k :].float() * p + q], dim=1)


def compose_field(net: nn.Module, base: GaussianBaseField | None) -> nn.Module:
    """The velocity field of a run: the network alone (no base), base + network
    (:class:`~flowstudy.flows.gaussian_base.WithBaseField`), or base + subspace residual when the
    network is a :class:`SubspaceNet`."""
    if base is None:
        if isinstance(net, SubspaceNet):
            raise ConfigError("a subspace residual (residual_rank) needs the Gaussian base field (base_field = 'gaussian')")
        return net
    return SubspaceResidual(net, base) if isinstance(net, SubspaceNet) else WithBaseField(net, base)


__all__ = [
    "RESIDUAL_INPUTS", "EigenSubspaceNet", "EigenbasisFlow", "SubspaceNet", "SubspaceResidual", "check_rank", "compose_field", "effective_rank",
    "top_directions",
]
