"""K trained subspace-residual runs as one field: their samples and exact log-densities in one solve.

The evaluation of a stacked training group (flowstudy.study.groups) repeats per member what
:func:`flowstudy.sampling.sample_standardized` and the factorised
:func:`flowstudy.metrics.likelihood.heldout_nll` do for one run. Every default recipe is a subspace
residual, which in its base's eigenbasis (:class:`flowstudy.flows.subspace.EigenbasisFlow`) carries its
network on the first k coordinates alone:

    dw_{:k}/dt = base(w_{:k}, t) + α h(w_{:k}, t)     (the member's own base, network and α)

:class:`StackedEigenField` evaluates the K members' k-dimensional fields as one network: their weights
and buffers stacked along a leading axis [K, ...] and one ``torch.func.functional_call`` under
``vmap`` (as the stacked trainer runs them), or member by member where vmap cannot batch the network.
:func:`sample_members` then solves all K members' noise rows in one fixed-step solve (replayed as a CUDA
graph on the GPU), and :func:`members_log_prob` integrates all K members' augmented ODEs (state and
the exact divergence, k vector-Jacobian products) in one solve per chunk of held-out rows.

Both are the one-run paths' maths on the same inputs: each member's noise is drawn from its own
generator as the one-run sampler draws it, and the remaining D - k coordinates follow each member's
closed forms. Results equal the one-run paths' up to floating-point rounding (tests compare them).
"""

from __future__ import annotations

import copy
from typing import Sequence

import torch
from torch import Tensor, nn

from flowstudy.flows.gaussian_base import times_per_row
from flowstudy.flows.subspace import EigenbasisFlow

NLL_ROW_BUDGET = 1 << 13
"""Rows one network evaluation of the batched log-density handles: members x k cotangents x held-out
rows per chunk (the exact divergence evaluates the network on k copies of each row). A default-size
Mamba keeps about 1.3 MB of activations a row for its backward pass: 8,192 rows, ~10 GB a group."""


class SubspaceVelocity(nn.Module):
    """An :class:`EigenbasisFlow`'s :meth:`~EigenbasisFlow.subspace_velocity` as a module, whose tensors
    (the base's and the network's) are its parameters and buffers: w [B, k], t [B] -> [B, k]."""

    def __init__(self, flow: EigenbasisFlow):
        super().__init__()
        self.base, self.net, self.k = flow.base, flow.field.net, flow.k

    def forward(self, w: Tensor, t: float | Tensor) -> Tensor:
        t = times_per_row(t, w)
        return self.base(w.float(), t, slice(0, self.k)) + self.net.scale * self.net.read(w, t)


class WholeEigenVelocity(SubspaceVelocity):
    """An :class:`EigenbasisFlow`'s whole field in its eigen-coordinates: w [B, D], t [B] -> [B, D], the base on
    every coordinate and the network on the first k (the run's field R^T v(R w), without the rotations)."""

    def forward(self, w: Tensor, t: float | Tensor) -> Tensor:
        t = times_per_row(t, w)
        lead = self.net.scale * self.net.read(w[:, : self.k], t)  # [B, k]
        return self.base(w.float(), t) + nn.functional.pad(lead, (0, w.shape[1] - self.k))


class StackedEigenField:
    """The eigenbasis fields of K members as one: w [K, B, k], t [K, B] -> [K, B, k] (``whole``: [K, B, D]).

    flows: the members' :class:`EigenbasisFlow` (one network architecture and k, one device).
    ``vmap``: batch the K networks with vmap (default: when a probe evaluation runs under vmap), else
    evaluate them one after another. ``whole``: every eigen-coordinate (:class:`WholeEigenVelocity`), else
    the first k (:class:`SubspaceVelocity`).
    """

    def __init__(self, flows: Sequence[EigenbasisFlow], vmap: bool | None = None, whole: bool = False):
        from torch.func import stack_module_state

        from flowstudy.models.ssm.stacking import scans_for_vmap

        ks = {f.k for f in flows}
        if len(ks) != 1:
            raise ValueError(f"members of a stacked field must share k; got {sorted(ks)}")
        self.flows, self.k, self.K = list(flows), ks.pop(), len(flows)
        self.dim = flows[0].rotation.shape[0] if whole else self.k
        self.members = [(WholeEigenVelocity if whole else SubspaceVelocity)(f) for f in flows]
        self.device = flows[0].base.mean.device
        params, buffers = stack_module_state(self.members)
        self.params = {n: p.detach() for n, p in params.items()}  # [K, ...]: no gradient to the weights
        self.buffers = buffers
        self.template = copy.deepcopy(self.members[0]).to("meta")
        switched = scans_for_vmap(self.template, self.device) if vmap is not False else []
        self.vmapped = self._can_vmap() if vmap is None else vmap
        for layer in switched if not self.vmapped else []:
            layer.backend = "auto"

    def _can_vmap(self) -> bool:
        """Whether the members' networks run under vmap (a forward and a backward through the rows)."""
        w = torch.zeros(self.K, 2, self.dim, device=self.device, requires_grad=True)
        try:
            self._vmapped(w, torch.full((self.K, 2), 0.5, device=self.device)).sum().backward()
            return True
        except Exception:  # e.g. an autograd.Function without a vmap rule
            return False

    def _vmapped(self, w: Tensor, t: Tensor) -> Tensor:
        from torch.func import functional_call, vmap

        def one(p: dict, b: dict, wk: Tensor, tk: Tensor) -> Tensor:
            return functional_call(self.template, (p, b), (wk, tk))

        return vmap(one)(self.params, self.buffers, w, t)

    def __call__(self, w: Tensor, t: Tensor) -> Tensor:
        """w: [K, B, dim], t: [K, B] -> [K, B, dim]."""
        if self.vmapped:
            return self._vmapped(w, t)
        return torch.stack([member(w[i], t[i]) for i, member in enumerate(self.members)])

    def flat(self, w: Tensor, t: Tensor) -> Tensor:
        """The same on the members' rows one after another: w [K·B, dim], t [K·B] -> [K·B, dim] (what a solver
        integrates)."""
        rows = w.shape[0] // self.K
        return self(w.reshape(self.K, rows, self.dim), t.reshape(self.K, rows)).reshape(w.shape)


def _integrator(field, rows: int, dim: int, device: torch.device, method: str, steps: int, t_start: float, t_end: float,
                graph: bool, grad: bool = False):
    """A :class:`~flowstudy.graph_solver.GraphSolver` of ``field`` ([rows, dim] at t_start -> t_end), recorded as
    a CUDA graph on the GPU when ``graph`` and run eagerly otherwise; ``grad``: the field runs with autograd on."""
    from flowstudy.graph_solver import GraphSolver

    def velocity(x: Tensor, t: Tensor) -> Tensor:
        with torch.enable_grad() if grad else torch.no_grad():
            return field(x, t)

    if graph and device.type == "cuda":
        return GraphSolver(velocity, rows, dim, device=device, method=method, steps=steps, t_start=t_start, t_end=t_end)
    return GraphSolver(velocity, rows, dim, device=device, method=method, steps=steps, t_start=t_start, t_end=t_end, capture=False)


@torch.no_grad()
def sample_members(
    field: StackedEigenField,
    n: int,
    seeds: Sequence[int],
    *,
    solver: str,
    steps: int,
    dim: int,
    precision: str = "fp32",
    batch_size: int = 4096,
    graph: bool = True,
) -> tuple[list[Tensor], int]:
    """n samples per member in its standardised space, [n, D] float32 on the CPU each, and the network
    evaluations per sample: what
    :func:`flowstudy.sampling.sample_standardized` (eigenbasis path) gives member i with seed ``seeds[i]``.

    solver: a fixed-step method (flowstudy.graph_solver.FIXED_STEP_METHODS); dim: D. The K members'
    first k eigen-coordinates are solved together ([K·rows, k]), as a CUDA graph on the GPU (``graph``).
    """
    from flowstudy.train.precision import autocast_for

    device, k, flows = field.device, field.k, field.flows
    generators = [torch.Generator(device=device).manual_seed(int(s)) for s in seeds]
    complements = [f.complement_map(solver, steps) for f in flows]
    amp = autocast_for(device, precision)

    def velocity(w: Tensor, t: Tensor) -> Tensor:
        with amp:
            return field.flat(w, t)

    solvers: dict[int, object] = {}
    chunks: list[list[Tensor]] = [[] for _ in flows]
    for start in range(0, n, batch_size):
        rows = min(batch_size, n - start)
        w0 = torch.stack([f.to_eigen(torch.randn(rows, dim, generator=g, device=device)) for f, g in zip(flows, generators)])  # [K, rows, D]
        if rows not in solvers:
            solvers[rows] = _integrator(velocity, field.K * rows, k, device, solver, steps, 0.0, 1.0, graph)
        lead = solvers[rows](w0[:, :, :k].reshape(-1, k)).float().reshape(field.K, rows, k)  # [K, rows, k]
        for i, (f, (p, q)) in enumerate(zip(flows, complements)):
            chunks[i].append(f.from_eigen(torch.cat([lead[i], w0[i, :, k:].float() * p + q], dim=1)).float().cpu())
    return [torch.cat(c) for c in chunks], next(iter(solvers.values())).nfe


@torch.no_grad()
def members_straightness(field: StackedEigenField, x0: Tensor, steps: int) -> list[dict[str, float]]:
    """Straightness of each member's paths from the noise rows x0 [B, D] (data coordinates), with Euler
    steps: what :func:`flowstudy.metrics.straightness` gives for each run's own field (the measure is a sum
    of squared norms, which the rotation into each member's eigenbasis leaves alone). ``field``: whole.
    Returns {"straightness", "straightness_relative"} per member."""
    from flowstudy.metrics import straightness
    from flowstudy.solvers import solve

    if field.dim == field.k and field.flows[0].rotation.shape[0] != field.k:
        raise ValueError("straightness needs the whole field (StackedEigenField(..., whole=True))")
    w0 = torch.cat([f.to_eigen(x0) for f in field.flows])  # [K·B, D]
    rows = x0.shape[0]
    per_row = straightness(field.flat, w0, method="euler", steps=steps, batch_size=w0.shape[0]).per_sample.double()  # [K·B]
    end = solve(field.flat, w0, 0.0, 1.0, method="euler", steps=steps).x
    disp2 = ((end - w0).double() ** 2).sum(-1).cpu()  # [K·B]
    out = []
    for i in range(field.K):
        value = per_row[i * rows : (i + 1) * rows].mean()
        out.append({"straightness": float(value), "straightness_relative": float(value / disp2[i * rows : (i + 1) * rows].mean().clamp_min(1e-300))})
    return out


def _augmented(field: StackedEigenField, precision: str, functional: bool | None = None):
    """d/dt of the members' augmented states [K·B, k + 1] (coordinates, then the log-density's
    integrand): the velocity and its exact divergence, sum_j e_jᵀ ∂v/∂w e_j.

    ``functional`` (default where the field is vmapped: tried at the first call, and given up for the
    folded form if torch.func refuses the network): one forward pass per member and k vector-Jacobian
    products vmapped over the cotangents (torch.func). Folded: the network on k copies of each row and one
    plain backward pass (row c·B + i carries cotangent e_c), which every network that trains in a stacked
    group supports (mamba_ssm's fused scan has no torch.func rule); about 1.5 times the work.
    """
    from flowstudy.train.precision import autocast_for

    K, k, device = field.K, field.k, field.device
    amp = autocast_for(device, precision)
    eye = torch.eye(k, device=device)
    mode = {"functional": field.vmapped if functional is None else functional, "tried": functional is not None}

    def folded(w0: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:  # [K, rows, k], [K, rows] -> v, div [K, rows]
        rows = w0.shape[1]
        w = w0[:, None].expand(K, k, rows, k).reshape(K, k * rows, k).detach().requires_grad_(True)
        times = t[:, None].expand(K, k, rows).reshape(K, k * rows)
        with amp:
            v = field(w, times).float()  # [K, k·rows, k]
        cotangents = eye[None, :, None, :].expand(K, k, rows, k).reshape(K, k * rows, k)
        (rows_j,) = torch.autograd.grad(v, w, cotangents)  # [K, k·rows, k]: e_cᵀ ∂v/∂w per row
        return v.detach().reshape(K, k, rows, k)[:, 0], torch.einsum("kcbc->kb", rows_j.reshape(K, k, rows, k))

    def by_vjp(w0: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        from torch.func import functional_call, vjp, vmap

        def one(p: dict, b: dict, wk: Tensor, tk: Tensor) -> tuple[Tensor, Tensor]:  # [rows, k], [rows]
            v, pull = vjp(lambda y: functional_call(field.template, (p, b), (y, tk)).float(), wk)
            rows_j = vmap(pull)(eye[:, None, :].expand(k, wk.shape[0], k))[0]  # [k, rows, k]: e_cᵀ ∂v/∂w
            return v, torch.einsum("cbc->b", rows_j)

        with amp:
            v, div = vmap(one)(field.params, field.buffers, w0.detach(), t)
        return v.detach(), div.detach()

    def augmented(state: Tensor, t: Tensor) -> Tensor:
        rows = state.shape[0] // K
        w0, times = state[:, :k].reshape(K, rows, k), t.reshape(K, rows)
        if mode["functional"]:
            try:
                v, div = by_vjp(w0, times)
            except RuntimeError:
                if mode["tried"]:
                    raise
                mode["functional"] = False
            mode["tried"] = True
        if not mode["functional"]:
            v, div = folded(w0, times)
        return torch.cat([v, div[..., None]], dim=-1).reshape(K * rows, k + 1).to(state.dtype)

    return augmented


def members_log_prob(
    field: StackedEigenField,
    w: Sequence[Tensor],
    *,
    solver: str,
    steps: int,
    precision: str = "fp32",
    graph: bool = True,
    row_budget: int = NLL_ROW_BUDGET,
    functional: bool | None = None,
) -> tuple[list[Tensor], int]:
    """log p of each member's held-out rows on its first k eigen-coordinates: w[i] [B, k] (member i's
    rotated standardised rows) -> [B] float64 on the CPU each, and the network evaluations of a solve.

    The augmented ODE (coordinates and -∫ div dt) is solved from t = 1 to 0 with the fixed-step
    ``solver``, as :func:`flowstudy.metrics.likelihood.ode_log_prob` does for one member (exact
    divergence), for chunks of rows that keep K·k·rows within ``row_budget``; on the GPU each chunk
    shape's solve is recorded once as a CUDA graph and replayed (``graph``; the last chunk is padded).
    ``functional``: how the divergence is computed (:func:`_augmented`; default: torch.func where it runs).
    """
    from flowstudy.metrics.likelihood import standard_normal_log_prob

    K, k, device = field.K, field.k, field.device
    b = w[0].shape[0]
    if any(x.shape != (b, k) for x in w):
        raise ValueError(f"every member's rows must have shape [{b}, {k}]; got {[tuple(x.shape) for x in w]}")
    chunk = max(1, min(b, row_budget // (K * k)))
    stacked = torch.stack([x.to(device=device, dtype=torch.float32) for x in w])  # [K, B, k]
    integrate = _integrator(_augmented(field, precision, functional), K * chunk, k + 1, device, solver, steps, 1.0, 0.0, graph, grad=True)
    parts = []
    for start in range(0, b, chunk):
        rows = stacked[:, start : start + chunk]  # [K, r, k]
        r = rows.shape[1]
        if r < chunk:  # one shape for every chunk (a recorded graph); the padding rows are dropped
            rows = torch.cat([rows, rows[:, :1].expand(K, chunk - r, k)], dim=1)
        init = torch.cat([rows, torch.zeros(K, chunk, 1, device=device)], dim=-1).reshape(K * chunk, k + 1)
        end = integrate(init).reshape(K, chunk, k + 1)[:, :r]  # [K, r, k + 1]
        parts.append((standard_normal_log_prob(end[..., :k].double()) + end[..., k].double()).cpu())  # [K, r]
    log_prob = torch.cat(parts, dim=1)  # [K, B]
    return list(log_prob), integrate.nfe


__all__ = ["NLL_ROW_BUDGET", "StackedEigenField", "SubspaceVelocity", "WholeEigenVelocity", "members_log_prob", "members_straightness", "sample_members"]
