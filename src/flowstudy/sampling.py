"""Sampling, nearest-text retrieval and reconstruction with a trained run.

Everything a user gets back is in the original embedding space; the network works in the
standardised space of its training split (the standardizer travels in the checkpoint).
"""

from __future__ import annotations

import numpy as np
import torch

from flowstudy.defaults import SAMPLE_SOLVER, SAMPLE_STEPS
from flowstudy.train.rundir import LoadedRun
from flowstudy.train.trainer import autocast_for


def _velocity(run: LoadedRun, device: torch.device, precision: str | None = None, field=None):
    """Velocity in standardised space (or ``field``, another form of the run's model); bf16
    autocast inside the network on CUDA if the run trained so (or ``precision`` says so)."""
    amp = autocast_for(device, precision or run.config.get("precision", "fp32"))
    field = run.model if field is None else field

    def velocity(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        with amp:
            return field(x, t)

    return velocity


@torch.no_grad()
def sample_standardized(
    run: LoadedRun,
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
    velocity = _velocity(run, device, precision, flow.subspace_velocity if flow is not None else None)
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


def sample(run: LoadedRun, n: int, **kwargs) -> np.ndarray:
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
def reconstruct(run: LoadedRun, x: np.ndarray, *, solver: str = "rk4", steps: int = 50, batch_size: int = 4096) -> dict[str, object]:
    """Invert data to noise (t: 1 -> 0), integrate back (0 -> 1); errors in ORIGINAL space.

    Returns mean/median MSE per element, mean cosine, relative error ||x - x'|| / ||x||, the
    norm of the recovered noise (should be near sqrt(D) if the flow is a good bijection) and NFE.
    """
    from flowstudy.solvers import solve

    device = next(run.model.parameters()).device
    velocity = _velocity(run, device)
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
    return {
        "n": int(x64.shape[0]),
        "solver": solver,
        "steps": steps,
        "nfe_round_trip": nfe,
        "mse_mean": float(mse.mean()),
        "mse_median": float(mse.median()),
        "cosine_mean": float(cosine.mean()),
        "cosine_min": float(cosine.min()),
        "relative_error_mean": float(rel.mean()),
        "noise_norm_mean": float(torch.cat(noise_norms).mean()),
        "noise_norm_expected": float(np.sqrt(x64.shape[1])),
    }
