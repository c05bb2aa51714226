"""Sampling, nearest-text retrieval and reconstruction with a trained run, and their results.

Everything a user gets back is in the original embedding space; the network works in the
standardised space of its training split (the standardizer travels in the checkpoint).
``run`` below is a :class:`~flowstudy.run.Run` (anything with ``model``, ``standardizer`` and
``config``); :class:`~flowstudy.run.Run`'s ``draw``, ``sample`` and ``reconstruct`` call these.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from flowstudy.defaults import SAMPLE_SOLVER, SAMPLE_STEPS
from flowstudy.train.precision import autocast_for


@dataclass(frozen=True)
class Samples:
    """Samples from a run. x: float32 [n, D], original space; z: float32 [n, D], standardised."""

    x: np.ndarray
    z: torch.Tensor
    nfe: int  # network evaluations per sample
    solver: str
    steps: int
    seed: int

    def __repr__(self) -> str:
        return f"Samples({self.x.shape[0]}x{self.x.shape[1]}, {self.solver} {self.steps} steps, {self.nfe} NFE, seed {self.seed})"


@dataclass(frozen=True)
class NearestText:
    """The training row nearest to one sample (Euclidean, standardised space) and its text."""

    sample: int
    nearest_train_row: int
    distance: float
    text: str

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (one line of ``flowstudy sample --nearest-text``'s ``.texts.jsonl``)."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class ReconstructionReport:
    """Round trip data -> noise -> data through a run's ODE, errors in the ORIGINAL space.

    ``mse_*``: mean squared error per element (original units²); ``cosine_*``: cosine similarity
    of each row with its reconstruction; ``relative_error_mean``: mean ||x − x'|| / ||x||;
    ``noise_norm_mean``: mean norm of the recovered noise, near ``noise_norm_expected`` = √D when
    the flow is a good bijection onto N(0, I).
    """

    source: str
    n: int
    solver: str
    steps: int
    nfe_round_trip: int
    mse_mean: float
    mse_median: float
    cosine_mean: float
    cosine_min: float
    relative_error_mean: float
    noise_norm_mean: float
    noise_norm_expected: float

    def to_dict(self) -> dict[str, Any]:
        """The figures as a dict (``flowstudy reconstruct --json``), without the source."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "source"}

    def __repr__(self) -> str:
        return (
            f"Reconstruction of {self.source} ({self.n} rows, {self.solver} {self.steps} steps each way, {self.nfe_round_trip} NFE): "
            f"MSE {self.mse_mean:.3g}, cosine {self.cosine_mean:.6f} (min {self.cosine_min:.6f}), "
            f"relative error {self.relative_error_mean:.3g}, noise norm {self.noise_norm_mean:.2f} (√D = {self.noise_norm_expected:.2f})"
        )


def velocity_of(run, device: torch.device, precision: str | None = None, field=None):
    """The run's velocity in standardised space (or ``field``, another form of the run's model),
    ``(x: [B, D], t: [B]) -> [B, D]``; bf16 autocast inside the network on CUDA if the run
    trained so (or ``precision`` says so)."""
    amp = autocast_for(device, precision or run.config.get("precision", "fp32"))
    field = run.model if field is None else field

    def velocity(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        with amp:
            return field(x, t)

    return velocity


@torch.no_grad()
def sample_standardized(
    run,
    n: int,
    *,
    solver: str = SAMPLE_SOLVER,
    steps: int = SAMPLE_STEPS,
    seed: int = 0,
    batch_size: int = 4096,
    graph: bool = True,
    precision: str | None = None,
    eigenbasis: bool = True,
) -> tuple[torch.Tensor, int]:
    """n samples in standardised space [n, D] (float32, CPU) and the NFE per sample.

    On CUDA a fixed-step solver is replayed as a CUDA graph per batch size (``graph=False``: eager;
    flowstudy.graph_solver); ``precision`` ("fp32", "tf32" or "bf16") overrides the run's network precision.
    A subspace-residual run with a fixed-step solver is solved in its base's eigenbasis
    (:class:`flowstudy.flows.subspace.EigenbasisFlow`): the solver integrates only the k subspace
    coordinates, which carry the network, and the other D - k follow the solver's affine map of
    their start. The samples are the plain solve's up to float rounding, without the base's two
    D x D products per evaluation; ``eigenbasis=False`` solves the plain field.
    """
    from flowstudy.flows.subspace import EigenbasisFlow
    from flowstudy.graph_solver import FIXED_STEP_METHODS, GraphSolver
    from flowstudy.solvers import solve

    device = next(run.model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    flow = EigenbasisFlow.of(run.model) if eigenbasis and solver in FIXED_STEP_METHODS else None
    velocity = velocity_of(run, device, precision, flow.subspace_velocity if flow is not None else None)
    dim = flow.k if flow is not None else run.standardizer.dim
    complement = flow.complement_map(solver, steps) if flow is not None else None
    use_graph = graph and device.type == "cuda" and solver in FIXED_STEP_METHODS
    solvers: dict[int, GraphSolver] = {}
    nfe = 0

    def integrate(x0: torch.Tensor) -> torch.Tensor:  # [rows, dim] from t = 0 to 1
        nonlocal nfe
        if use_graph:
            rows = x0.shape[0]
            if rows not in solvers:
                solvers[rows] = GraphSolver(velocity, rows, dim, device=device, method=solver, steps=steps)
            nfe = solvers[rows].nfe
            return solvers[rows](x0)
        result = solve(velocity, x0, 0.0, 1.0, method=solver, steps=steps)
        nfe = result.nfe
        return result.x

    chunks = []
    for start in range(0, n, batch_size):
        x0 = torch.randn(min(batch_size, n - start), run.standardizer.dim, generator=generator, device=device)
        x1 = integrate(x0) if flow is None else flow.from_eigen(flow.solve(flow.to_eigen(x0), integrate, complement))
        chunks.append(x1.float().cpu())
    return torch.cat(chunks), nfe


def sample(run, n: int, **kwargs) -> np.ndarray:
    """n samples in the ORIGINAL embedding space: float32 [n, D]."""
    z, _ = sample_standardized(run, n, **kwargs)
    return run.standardizer.inverse(z.double()).float().numpy()


def nearest_rows(queries: torch.Tensor, reference: torch.Tensor, batch: int = 2048) -> tuple[torch.Tensor, torch.Tensor]:
    """Index and Euclidean distance of each query's nearest reference row. [Q, D], [R, D] -> [Q], [Q]."""
    idx, dist = [], []
    for start in range(0, queries.shape[0], batch):
        d = torch.cdist(queries[start : start + batch].double(), reference.double())  # [b, R]
        value, index = d.min(dim=1)
        idx.append(index)
        dist.append(value)
    return torch.cat(idx), torch.cat(dist)


@torch.no_grad()
def reconstruct(
    run, x: np.ndarray, *, solver: str = "rk4", steps: int = 50, batch_size: int = 4096, source: str = "<array>"
) -> ReconstructionReport:
    """Invert data to noise (t: 1 -> 0), integrate back (0 -> 1); errors in ORIGINAL space.

    x: [N, D], original space; ``source`` names the rows in the report. The report holds mean and
    median MSE per element, mean cosine, relative error ||x - x'|| / ||x||, the norm of the
    recovered noise (near sqrt(D) if the flow is a good bijection) and the NFE.
    """
    from flowstudy.solvers import solve

    device = next(run.model.parameters()).device
    velocity = velocity_of(run, device)
    original = torch.from_numpy(np.asarray(x, dtype=np.float32))
    z1 = run.standardizer.transform(original.double()).float()
    recon, noise_norms, nfe = [], [], 0
    for start in range(0, z1.shape[0], batch_size):
        batch = z1[start : start + batch_size].to(device)
        noise = solve(velocity, batch, 1.0, 0.0, method=solver, steps=steps)
        back = solve(velocity, noise.x.float(), 0.0, 1.0, method=solver, steps=steps)
        recon.append(back.x.float().cpu())
        noise_norms.append(noise.x.float().norm(dim=1).cpu())
        nfe = noise.nfe + back.nfe
    x_hat = run.standardizer.inverse(torch.cat(recon).double())
    x64 = original.double()
    mse = ((x_hat - x64) ** 2).mean(dim=1)
    cosine = torch.nn.functional.cosine_similarity(x_hat, x64, dim=1)
    rel = (x_hat - x64).norm(dim=1) / x64.norm(dim=1)
    return ReconstructionReport(
        source=source,
        n=int(x64.shape[0]),
        solver=solver,
        steps=steps,
        nfe_round_trip=nfe,
        mse_mean=float(mse.mean()),
        mse_median=float(mse.median()),
        cosine_mean=float(cosine.mean()),
        cosine_min=float(cosine.min()),
        relative_error_mean=float(rel.mean()),
        noise_norm_mean=float(torch.cat(noise_norms).mean()),
        noise_norm_expected=float(np.sqrt(x64.shape[1])),
    )


__all__ = ["NearestText", "ReconstructionReport", "Samples", "nearest_rows", "reconstruct", "sample", "sample_standardized", "velocity_of"]
