"""Held-out negative log-likelihood of a flow, beside the closed form of the data's Gaussian fit.

A flow dx/dt = v(x, t) from N(0, I) at t = 0 to the data at t = 1 has an exact density by the
instantaneous change of variables (Chen et al. 2018, "Neural ODEs"; Grathwohl et al. 2019,
"FFJORD")::

    log p_1(x_1) = log N(x_0; 0, I) - ∫_0^1 div v(x_t, t) dt,

with x_t the ODE solution through x_1. Integrating the augmented state (x, Δ), dΔ/dt = div v,
backwards from (x_1, 0) at t = 1 to t = 0 gives x_0 and Δ(0) = -∫_0^1 div v dt, so
log p_1(x_1) = log N(x_0; 0, I) + Δ(0). The divergence is

- ``exact``: the trace of the Jacobian from D vector-Jacobian products with the basis vectors,
  batched with ``torch.func.vmap`` in chunks of ``chunk`` vectors (memory ~ chunk·B·D);
  about D backward passes per network evaluation: cheap on a GPU, slow on a CPU in 1024-D;
- ``hutchinson``: E[εᵀ J ε] with Rademacher probes ε (Hutchinson 1989), K probes per row fixed
  for the whole integration (FFJORD); one backward pass per probe. Unbiased for log p; the
  standard error over probes is reported.

The flow lives in the standardised space z = (x - m) / s of its training split, so the density
of an original-space row is p_x(x) = p_z(z) / prod_d s_d: the standardiser's log-determinant
sum_d log s_d is subtracted. Results are in nats per dimension (and bits per dimension,
nats / ln 2) of the ORIGINAL space, where the rows live (SONAR rows have per-dimension std
≈ 0.005, so these numbers are negative: the density exceeds 1); the standardised-space value
is reported beside them. Lower is better.

With ``graph=True`` (:func:`heldout_nll`; exact divergence, fixed-step solver) each batch's whole
solve, every network evaluation with its vector-Jacobian products, is recorded once per batch
size as a CUDA graph (:class:`GraphSolves`, :class:`flowstudy.graph_solver.GraphSolver`) and
replayed: the same arithmetic without a Python call per kernel, which on a GPU shared by many
threads of one process is bounded by their one interpreter lock. Off the GPU it solves as without.

The Gaussian fits (:func:`gaussian_log_prob`) are fitted to the training rows in the same
standardised space: ``full`` with the Ledoit–Wolf shrunk covariance of the Gaussian base field
(:func:`flowstudy.flows.gaussian_base.ledoit_wolf`), ``diagonal`` with the per-dimension
variances. The same log-determinant converts them, so all rows compare on one scale.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Callable

import numpy as np
import torch
from torch import Tensor

from flowstudy.errors import ConfigError, DataError
from flowstudy.flows.divergence import (
    DEFAULT_CHUNK,
    divergence_exact,
    divergence_hutchinson,
    is_functorch_refusal,
    rademacher,
)
from flowstudy.flows.subspace import EigenbasisFlow
from flowstudy.solvers import VelocityFn

if TYPE_CHECKING:
    from flowstudy.graph_solver import GraphSolver

ESTIMATORS = ("exact", "hutchinson")
"""Divergence estimators; "auto" picks exact on CUDA and hutchinson on CPU, and exact wherever the
field knows its own divergence (a subspace residual: k vector-Jacobian products)."""

DEFAULT_SOLVER, DEFAULT_STEPS = "rk4", 20
"""Fixed-step RK4 with 20 steps (80 network evaluations) unless told otherwise."""

DEFAULT_PROBES = 4
"""Rademacher probes per row: enough for a standard error, one backward pass each."""

GAUSSIAN_KINDS = ("full", "diagonal")

LN2 = math.log(2.0)

def resolve_estimator(estimator: str, device: torch.device | str) -> str:
    """"auto" -> "exact" on CUDA, "hutchinson" elsewhere; names are checked."""
    if estimator == "auto":
        return "exact" if torch.device(device).type == "cuda" else "hutchinson"
    if estimator not in ESTIMATORS:
        raise ConfigError(f"unknown NLL estimator {estimator!r}; valid: auto, {', '.join(ESTIMATORS)}")
    return estimator


# ----------------------------------------------------------------------------- the ODE
def standard_normal_log_prob(z: Tensor) -> Tensor:
    """log N(z; 0, I) per row: z [B, D] -> [B]."""
    return -0.5 * (z.square().sum(-1) + z.shape[-1] * math.log(2 * math.pi))


def ode_log_prob(
    velocity_fn: VelocityFn,
    x: Tensor,
    *,
    estimator: str = "hutchinson",
    probes: int = DEFAULT_PROBES,
    solver: str = DEFAULT_SOLVER,
    steps: int = DEFAULT_STEPS,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    chunk: int = DEFAULT_CHUNK,
    seed: int = 0,
    exact_divergence: Callable[..., tuple[Tensor, Tensor]] | None = None,
    graph_solves: GraphSolves | None = None,
) -> tuple[Tensor, int]:
    """log p_1(x) of the flow ``velocity_fn`` (module docstring), in the flow's own space.

    Parameters
    ----------
    velocity_fn: ``(x: [B, D], t: [B]) -> [B, D]``; noise N(0, I) at t = 0, data at t = 1.
    x: [B, D] data rows (float32 or float64; the ODE state keeps that precision).
    estimator: "exact" or "hutchinson" (``probes`` Rademacher probes per row, seeded by ``seed``).
    solver, steps, rtol, atol: :func:`flowstudy.solvers.solve` from t = 1 to t = 0.
    exact_divergence: ``(x, t, functional=True) -> (v [B, D], div [B])`` from a field that knows its
    own exact divergence (:meth:`flowstudy.flows.subspace.SubspaceResidual.divergence`); used by
    "exact". ``functional=False`` asks for plain autograd (:class:`~flowstudy.flows.divergence.Jacobian`) once torch.func refuses.
    graph_solves: replay the solve as a graph of its batch size (exact estimator, fixed-step solver).

    Returns log p [K, B] (K = probes for Hutchinson, 1 for exact) and the network evaluations.
    """
    from flowstudy.solvers import solve

    if estimator not in ESTIMATORS:
        raise ConfigError(f"unknown NLL estimator {estimator!r}; valid: {', '.join(ESTIMATORS)}")
    if x.ndim != 2 or x.shape[0] < 1:
        raise DataError(f"x must have shape [B, D] with B >= 1; got {tuple(x.shape)}")
    if estimator == "hutchinson" and (isinstance(probes, bool) or not isinstance(probes, int) or probes < 1):
        raise ConfigError(f"probes must be an integer >= 1; got {probes!r}")
    if graph_solves is not None:
        graph_solves.check(estimator, solver)
    b, d = x.shape
    k = probes if estimator == "hutchinson" else 1
    eps = rademacher(k, b, d, torch.Generator().manual_seed(seed), x.device) if estimator == "hutchinson" else None

    functional = [True]  # torch.func until the network refuses it, then plain autograd

    def divergence(y: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        if eps is None:
            if exact_divergence is not None:
                v, div = exact_divergence(y, t, functional=functional[0])
            else:
                v, div = divergence_exact(velocity_fn, y, t, chunk, functional=functional[0])
            return v, div[None]  # [1, B]
        return divergence_hutchinson(velocity_fn, y, t, eps.to(y.dtype), functional=functional[0])

    def augmented(state: Tensor, t: Tensor) -> Tensor:  # state [B, D + K] -> d/dt [B, D + K]
        y = state[:, :d]
        try:
            v, div = divergence(y, t)
        except RuntimeError as err:
            if not (functional[0] and is_functorch_refusal(err)):
                raise
            functional[0] = False
            v, div = divergence(y, t)
        return torch.cat([v.to(state.dtype), div.T.to(state.dtype)], dim=1)

    init = torch.cat([x, torch.zeros(b, k, dtype=x.dtype, device=x.device)], dim=1)  # [B, D + K]
    if graph_solves is not None:
        end, nfe = graph_solves(augmented, init, solver, steps)
    else:
        result = solve(augmented, init, 1.0, 0.0, method=solver, steps=steps, rtol=rtol, atol=atol)
        end, nfe = result.x, result.nfe
    z0, delta = end[:, :d], end[:, d:]  # [B, D], [B, K]: delta = -∫_0^1 div dt
    return (standard_normal_log_prob(z0.double())[None, :] + delta.double().T), nfe


class GraphSolves:
    """Backward solves of the augmented ODE (exact divergence) replayed as CUDA graphs, one
    :class:`~flowstudy.graph_solver.GraphSolver` per batch shape, recorded at its first solve with
    that call's augmented field (every batch of one :func:`heldout_nll` integrates the same field).
    Off CUDA, :func:`flowstudy.solvers.solve` as without (no graph)."""

    def __init__(self, device: torch.device | str) -> None:
        self.device = torch.device(device)
        self.solvers: dict[tuple, GraphSolver] = {}  # (shape, dtype, method, steps) -> its recorded solve

    @property
    def recorded(self) -> bool:
        """Whether any solve was recorded as a CUDA graph (False off CUDA)."""
        return any(solver.graph is not None for solver in self.solvers.values())

    @staticmethod
    def check(estimator: str, solver: str) -> None:
        """The settings a recorded solve supports, or a ConfigError naming the one that is not."""
        from flowstudy.graph_solver import FIXED_STEP_METHODS

        if estimator != "exact":
            raise ConfigError(f"graph NLL replays the exact divergence only; got estimator {estimator!r}")
        if solver not in FIXED_STEP_METHODS:
            raise ConfigError(f"graph NLL needs a fixed-step solver ({', '.join(FIXED_STEP_METHODS)}); got {solver!r}")

    def __call__(self, augmented: VelocityFn, init: Tensor, solver: str, steps: int) -> tuple[Tensor, int]:
        """(state at t = 0 [B, D + K], network evaluations) from ``init`` at t = 1."""
        from flowstudy.graph_solver import GraphSolver

        key = (tuple(init.shape), init.dtype, solver, steps)
        if key not in self.solvers:
            def field(state: Tensor, t: Tensor) -> Tensor:  # GraphSolver records without grad; the VJPs need it
                with torch.enable_grad():
                    return augmented(state, t)

            self.solvers[key] = GraphSolver(field, batch=init.shape[0], dim=init.shape[1], device=self.device,
                                            method=solver, steps=steps, t_start=1.0, t_end=0.0, dtype=init.dtype)
        graph = self.solvers[key]
        return graph(init), graph.nfe


# ----------------------------------------------------------------------------- Gaussians
def gaussian_log_prob(x: Tensor, mean: Tensor, eigvecs: Tensor, eigvals: Tensor) -> Tensor:
    """log N(x; mean, V diag(lam) Vᵀ) per row, float64: x [B, D] -> [B]. With m < D orthonormal
    columns V [D, m] and lam [m], the log-density of the m coordinates Vᵀ (x - mean) alone (0 for m = 0)."""
    if eigvals.numel() and eigvals.min() <= 0:
        raise DataError(f"the covariance must be positive definite; smallest eigenvalue {float(eigvals.min()):.3g}")
    y = (x.double() - mean.double()) @ eigvecs.double()  # [B, m] in the eigenbasis
    lam = eigvals.double()
    return -0.5 * ((y.square() / lam).sum(-1) + torch.log(lam).sum() + lam.shape[0] * math.log(2 * math.pi))


def gaussian_fit(train: Tensor, kind: str = "full") -> tuple[Tensor, Tensor, Tensor, float]:
    """(mean [D], eigvecs [D, D], eigvals [D], shrinkage) of the Gaussian fit of ``train`` [N, D].

    ``full``: the Ledoit–Wolf covariance of the Gaussian base field; ``diagonal``: the unbiased
    per-dimension variances (shrinkage NaN).
    """
    from flowstudy.flows.gaussian_base import ledoit_wolf

    x = train.double()
    if kind == "full":
        cov, rho = ledoit_wolf(x)
        eigvals, eigvecs = torch.linalg.eigh(cov)
        return x.mean(0), eigvecs, eigvals, rho
    if kind == "diagonal":
        var = x.var(0, unbiased=True)
        return x.mean(0), torch.eye(x.shape[1], dtype=x.dtype, device=x.device), var, math.nan
    raise ConfigError(f"unknown Gaussian fit {kind!r}; valid: {', '.join(GAUSSIAN_KINDS)}")


# ----------------------------------------------------------------------------- results
@dataclass(frozen=True)
class NLLEstimate:
    """Mean negative log-likelihood of held-out rows, nats per dimension (lower is better).

    nats_per_dim: original space (the standardiser's log-determinant included);
    bits_per_dim: the same over ln 2; nats_per_dim_standardised: in the flow's space.
    std_error: the estimator's standard error (over Hutchinson probes, NaN with one probe; 0 for
    the exact divergence and the closed forms);
    std_error_rows: over rows (how much another draw of the held-out set would move it).
    """

    name: str
    nats_per_dim: float
    bits_per_dim: float
    nats_per_dim_standardised: float
    std_error: float
    std_error_rows: float
    n_rows: int
    dim: int


def nll_estimate(name: str, log_prob: Tensor, dim: int, log_det: float, *, stochastic: bool = False) -> NLLEstimate:
    """Summarise log p [K, B] (K estimates of each of B rows, standardised space) of a D = ``dim``
    space whose standardiser has log-determinant ``log_det`` = sum_d log s_d. ``stochastic``:
    the K estimates are Hutchinson probes (their spread is the estimator's standard error)."""
    k, b = log_prob.shape
    per_row = log_prob.double().mean(0)  # [B]
    if not stochastic:
        probe_se = 0.0
    else:  # Var of the mean over rows of K-probe means: sum_i s_i^2 / K / B^2
        probe_se = float((log_prob.double().var(0).sum() / k).sqrt() / b) if k > 1 else math.nan
    row_se = float(per_row.std() / math.sqrt(b)) if b > 1 else math.nan
    nll_std = float(-per_row.mean()) / dim
    nll = nll_std + log_det / dim  # -log p_x = -log p_z + sum_d log s_d
    return NLLEstimate(name, nll, nll / LN2, nll_std, probe_se / dim, row_se / dim, b, dim)


@dataclass(frozen=True)
class HeldoutNLL:
    """A flow's held-out NLL beside the closed-form NLL of the Gaussian fits, on the same rows.

    gap_to_gaussian: model minus full Gaussian fit, nats/dim (negative: the flow is better);
    gap_std_error: its standard error, paired over rows, the estimator's included.
    """

    model: NLLEstimate
    gaussian_full: NLLEstimate
    gaussian_diagonal: NLLEstimate
    gap_to_gaussian: float
    gap_std_error: float
    estimator: str
    probes: int
    solver: str
    steps: int
    rtol: float | None
    atol: float | None
    nfe: int
    shrinkage: float
    log_det_standardiser: float
    device: str
    seconds: float
    graph: bool = False  # the solves were replayed as CUDA graphs

    @property
    def beats_gaussian(self) -> bool:
        """The flow's NLL is below the full Gaussian fit's by more than 2 standard errors."""
        return self.gap_to_gaussian + 2.0 * self.gap_std_error < 0.0

    def describe(self) -> str:
        """One line: how it was computed."""
        probes = f" with {self.probes} Rademacher probes" if self.estimator == "hutchinson" else ""
        tol = f", rtol {self.rtol:g}, atol {self.atol:g}" if self.solver == "dopri5" else f", {self.steps} steps"
        return (
            f"{self.estimator} divergence{probes}; {self.solver}{tol} ({self.nfe} network evaluations) from t = 1 to 0; "
            f"{self.model.n_rows} rows on {self.device}; original space (standardiser log-det {self.log_det_standardiser:.1f})"
        )

    def to_dict(self) -> dict:
        """Every field (JSON-ready) plus ``beats_gaussian``."""
        d = asdict(self)
        d["beats_gaussian"] = self.beats_gaussian
        return d

    def summary(self) -> dict[str, float | bool | str]:
        """What an evaluation table keeps (:attr:`flowstudy.metrics.EvaluationTable.nll`): nats/dim
        in the original space of the model and the Gaussian fits, the gap and the verdict."""
        return {
            "model": self.model.nats_per_dim,
            "model_std_error": self.model.std_error,
            "gaussian": self.gaussian_full.nats_per_dim,
            "gaussian_diagonal": self.gaussian_diagonal.nats_per_dim,
            "gap": self.gap_to_gaussian,
            "gap_std_error": self.gap_std_error,
            "beats_gaussian": self.beats_gaussian,
            "rows": self.model.n_rows,
        }


def heldout_nll(
    run,
    heldout: np.ndarray | Tensor,
    train: np.ndarray | Tensor,
    *,
    estimator: str = "auto",
    probes: int = DEFAULT_PROBES,
    solver: str = DEFAULT_SOLVER,
    steps: int = DEFAULT_STEPS,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    rows: int | None = None,
    batch_size: int = 100,
    chunk: int = DEFAULT_CHUNK,
    seed: int = 0,
    factorised: bool = True,
    graph: bool = False,
) -> HeldoutNLL:
    """Held-out NLL of a trained run (:class:`~flowstudy.run.Run`) and of the
    Gaussian fits of ``train``, on ``rows`` seeded rows of ``heldout`` (all by default).

    heldout: [Nh, D], train: [Nt, D], both in the ORIGINAL space. The flow runs in fp32 on the
    run's device; batches of ``batch_size`` rows bound memory (exact: ~chunk·batch·D floats).
    A subspace residual that reads its subspace coordinates (every recipe) factorises
    (:mod:`flowstudy.flows.subspace`): with ``factorised`` (the default) the ODE runs on the k
    subspace coordinates of the base's eigenbasis with their exact k x k divergence, and the other
    D - k coordinates get the Gaussian's closed form; ``factorised=False`` integrates the whole
    state with the structured divergence. The two agree up to the solver's error on the Gaussian
    part. ``graph``: each batch's solve replayed as a CUDA graph (:class:`GraphSolves`; exact
    estimator and fixed-step solver only); the same values up to the GPU's rounding.
    """
    started = time.perf_counter()
    param = next(run.model.parameters())
    device, dtype = param.device, param.dtype  # fp32 for trained runs: no autocast here
    # a field that knows its exact divergence cheaply (a subspace residual: k VJPs) uses it
    structured = getattr(run.model, "divergence", None)
    if structured is not None and estimator in ("auto", "exact"):
        estimator = "exact"
    else:
        structured, estimator = None, resolve_estimator(estimator, device)
    std = run.standardizer
    x = _subset(torch.as_tensor(np.asarray(heldout)), rows, seed)
    z = std.transform(x.double())  # [B, D]
    z_train = std.transform(torch.as_tensor(np.asarray(train)).double())  # [N, D]
    log_det = float(torch.log(std.scale).sum())

    def velocity(y: Tensor, t: Tensor) -> Tensor:
        return run.model(y, t)

    flow = EigenbasisFlow.of(run.model) if factorised and estimator == "exact" else None
    graph_solves = GraphSolves(device) if graph else None  # its settings checked at the first batch
    parts, nfe = [], 0
    for i, start in enumerate(range(0, z.shape[0], batch_size)):
        rows_z = z[start : start + batch_size]
        if flow is not None:
            lp, nfe = _factorised_log_prob(flow, rows_z, device, dtype, solver=solver, steps=steps, rtol=rtol, atol=atol,
                                           graph_solves=graph_solves)
        else:
            lp, nfe = ode_log_prob(
                velocity, rows_z.to(device=device, dtype=dtype), estimator=estimator, probes=probes,
                solver=solver, steps=steps, rtol=rtol, atol=atol, chunk=chunk, seed=seed + i, exact_divergence=structured,
                graph_solves=graph_solves,
            )
        parts.append(lp.cpu())
    model_lp = torch.cat(parts, dim=1)  # [K, B]
    return beside_gaussians(
        model_lp, z, z_train, log_det, estimator=estimator, probes=probes, solver=solver, steps=steps, rtol=rtol, atol=atol,
        nfe=nfe, device=str(device), started=started, graph=graph_solves is not None and graph_solves.recorded,
    )


def beside_gaussians(model_lp: Tensor, z: Tensor, z_train: Tensor, log_det: float, *, estimator: str, probes: int, solver: str,
                     steps: int, rtol: float, atol: float, nfe: int, device: str, started: float, graph: bool = False,
                     fits: dict | None = None) -> HeldoutNLL:
    """The :class:`HeldoutNLL` of a flow's log p [K, B] of the standardised held-out rows z [B, D], beside the
    Gaussian fits of the standardised training rows z_train [N, D] (``fits``: kind -> :func:`gaussian_fit`,
    when already computed); log_det: the standardiser's; ``started``: the perf_counter at the start."""
    dim = z.shape[1]
    fits = fits if fits is not None else {kind: gaussian_fit(z_train, kind) for kind in GAUSSIAN_KINDS}
    gauss_lp = {kind: gaussian_log_prob(z, *fit[:3])[None] for kind, fit in fits.items()}  # [1, B] each
    model = nll_estimate(estimator, model_lp, dim, log_det, stochastic=estimator == "hutchinson")
    diff = (gauss_lp["full"][0] - model_lp.mean(0)) / dim  # [B]: per-row NLL gap, nats/dim
    gap_se = math.hypot(float(diff.std() / math.sqrt(len(diff))) if len(diff) > 1 else math.nan, model.std_error)
    return HeldoutNLL(
        model=model,
        gaussian_full=nll_estimate("gaussian_full", gauss_lp["full"], dim, log_det),
        gaussian_diagonal=nll_estimate("gaussian_diagonal", gauss_lp["diagonal"], dim, log_det),
        gap_to_gaussian=float(diff.mean()),
        gap_std_error=gap_se,
        estimator=estimator,
        probes=probes if estimator == "hutchinson" else 0,
        solver=solver,
        steps=steps,
        rtol=rtol if solver == "dopri5" else None,
        atol=atol if solver == "dopri5" else None,
        nfe=nfe,
        shrinkage=fits["full"][3],
        log_det_standardiser=log_det,
        device=device,
        seconds=time.perf_counter() - started,
        graph=graph,
    )


def _factorised_log_prob(flow, z: Tensor, device, dtype, **solve_kwargs) -> tuple[Tensor, int]:
    """log p(z) [1, B] of a subspace residual in the standardised space (``flow``: its
    :class:`~flowstudy.flows.subspace.EigenbasisFlow`): the k-dimensional ODE with the exact
    divergence of its velocity, plus the closed-form Gaussian of the other D - k eigen-coordinates
    (the rotation has unit determinant)."""
    k, base = flow.k, flow.field.base  # the data-space base: its mean; flow.base: sorted eigenvalues
    rotation = flow.rotation.double().cpu()
    w_k = z.double() @ rotation[:, :k]  # [B, k]
    lp_k, nfe = ode_log_prob(flow.subspace_velocity, w_k.to(device=device, dtype=dtype), estimator="exact", chunk=k, **solve_kwargs)
    lp_rest = gaussian_log_prob(z, base.mean.cpu(), rotation[:, k:], flow.base.eigvals.cpu()[k:])
    return lp_k.cpu().double() + lp_rest[None, :], nfe


def _subset(x: Tensor, rows: int | None, seed: int) -> Tensor:
    """``rows`` rows of x [N, D] chosen by ``seed`` (kept in order), or all of them."""
    if x.ndim != 2:
        raise DataError(f"held-out rows must have shape [N, D]; got {tuple(x.shape)}")
    if rows is None or rows >= x.shape[0]:
        return x
    if rows < 1:
        raise ConfigError(f"NLL rows must be >= 1; got {rows}")
    from flowstudy.metrics.seeding import derived_rng

    idx = np.sort(derived_rng(seed, "nll-rows").choice(x.shape[0], rows, replace=False))
    return x[torch.from_numpy(idx)]


__all__ = [
    "DEFAULT_PROBES",
    "DEFAULT_SOLVER",
    "DEFAULT_STEPS",
    "ESTIMATORS",
    "GAUSSIAN_KINDS",
    "HeldoutNLL",
    "NLLEstimate",
    "beside_gaussians",
    "gaussian_fit",
    "gaussian_log_prob",
    "heldout_nll",
    "nll_estimate",
    "ode_log_prob",
    "resolve_estimator",
    "standard_normal_log_prob",
]
