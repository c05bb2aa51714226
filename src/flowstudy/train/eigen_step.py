"""A subspace-residual run's training step in its base's eigen-coordinates.

A subspace residual that reads its k coordinates trains in its base's eigen-coordinates
w = Rᵀx when the run allows it (:func:`eigenbasis_refusal`): the rows are rotated once, the base
field is elementwise there and the network reads the first k axes, so a step needs no
[B, D] x [D, D] product. Paths, couplings (distances) and the noise and mixup augmentations
commute with the rotation, and the loss is rotation-invariant: a step has the loss and gradients
of the data-space step on the rotated draws (a rotation of N(0, I) noise is N(0, I)). Validation,
checkpoints and sampling stay in data coordinates.

There, with ``leading`` and where the coupling pairs rows independently of their values
(:func:`leading_refusal`), the step keeps only the k leading coordinates: [B, k] draws, rows,
base and loss. Outside them the network adds nothing and the velocity is the base field's, which
has no parameters. Every path and augmentation here is then coordinatewise, so those D - k
coordinates add a term to the loss that does not depend on the weights, and the gradient is that
of the k coordinates' squared error. The step's loss (a mean over k coordinates) is scaled by
k / D, so the gradient (and so clipping) is the whole step's for the same draws of those
coordinates. The logged loss adds the D - k coordinates' term as its expectation
(:func:`complement_loss`), so it estimates what the whole step's loss does. D / k times fewer
draws and elementwise work.
"""

from __future__ import annotations

import torch

from flowstudy.data import apply_augmentations
from flowstudy.data.augment import ROTATION_EQUIVARIANT
from flowstudy.flows.couplings import Independent, Paired
from flowstudy.flows.gaussian_base import DiagonalGaussianBase, WithBaseField
from flowstudy.flows.method import velocity_loss
from flowstudy.flows.subspace import SubspaceNet
from flowstudy.train.step import StepSpace

COMPLEMENT_SEED = 48_611
"""Added to the run's seed for :func:`complement_loss`'s own generator (the run's stream is untouched)."""


def eigenbasis_refusal(model, augmentations) -> str | None:
    """Why a run of ``model`` with ``augmentations`` cannot step in its base's eigen-coordinates (None: it can)."""
    if not isinstance(model, SubspaceNet):
        return "the network is not a subspace residual"
    if model.reads != "subspace":
        return "the residual reads the whole state (residual_input = 'full')"
    fixed = [name for name, _ in augmentations if name not in ROTATION_EQUIVARIANT]
    return f"augmentation {fixed[0]} does not commute with a rotation" if fixed else None


def leading_refusal(model, flow, dim: int) -> str | None:
    """Why an eigen-coordinate step cannot keep only the k leading coordinates (None: it can)."""
    if not isinstance(flow.coupling, (Independent, Paired)):
        return f"the {type(flow.coupling).__name__} coupling pairs rows by distances over every coordinate"
    if model.rank >= dim:
        return "the subspace is the whole space"
    return None


def eigen_space(space: StepSpace, flow, augmentations, *, leading: bool = True, seed: int = 0) -> StepSpace:
    """``space`` (the run's own: its rows, network and base field) in the base's eigen-coordinates,
    cut to the k leading ones with ``leading`` where allowed (module docstring); ``space`` itself
    where the run cannot rotate. ``seed``: the run's, for :func:`complement_loss`."""
    model, dim = space.net, space.x1.shape[1]
    if eigenbasis_refusal(model, augmentations) is not None:
        return space
    net, base = model.in_eigenbasis(), space.base.in_eigenbasis()
    rotation = base.eigvecs  # [D, D]
    x1 = space.x1 @ rotation  # [N, D]
    x0 = space.x0 @ rotation if space.x0 is not None else None
    if not leading or leading_refusal(model, flow, dim) is not None:
        return StepSpace(x1, x0, net, base, WithBaseField(net, base))
    k = model.rank
    offset = complement_loss(x1, x0, base, k, flow, augmentations, seed=seed)
    cut = base.leading(k)
    x1, x0 = x1[:, :k].contiguous(), (x0[:, :k].contiguous() if x0 is not None else None)  # [N, k]
    return StepSpace(x1, x0, net, cut, WithBaseField(net, cut), loss_scale=k / dim, loss_offset=offset)


@torch.no_grad()
def complement_loss(
    x1: torch.Tensor, x0: torch.Tensor | None, base: DiagonalGaussianBase, k: int, flow, augmentations, *,
    seed: int, samples: int = 8192, chunk: int = 1024,
) -> float:
    """The whole eigen-coordinate step's loss from coordinates k.. (the base field alone there),
    for rows x1 [N, D] (and x0 [N, D] or None) in eigen-coordinates: its mean over ``samples`` of
    the step's draws, from a generator of its own. A constant of the run; its Monte Carlo error
    is ~1 % of it."""
    dim = x1.shape[1]
    generator = torch.Generator(device=x1.device).manual_seed(seed + COMPLEMENT_SEED)
    total, chunks = 0.0, samples // chunk
    for _ in range(chunks):
        idx = torch.randint(x1.shape[0], (chunk,), generator=generator, device=x1.device)
        rows = apply_augmentations(x1[idx], augmentations, generator)
        sample = flow.sample_path(rows, x0[idx] if x0 is not None else None, generator)
        v = base(sample.x_t[:, k:], sample.t, dims=slice(k, None))  # [chunk, D - k]
        total += float(velocity_loss(v, sample.u_t[:, k:], flow.loss_weight))  # a mean over D - k coordinates
    return total / chunks * (dim - k) / dim


__all__ = ["COMPLEMENT_SEED", "complement_loss", "eigen_space", "eigenbasis_refusal", "leading_refusal"]
