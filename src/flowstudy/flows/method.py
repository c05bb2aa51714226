"""A flow method = a path, a coupling and a time sampler, composed.

Conditional flow matching (Lipman et al. 2023; Tong et al. 2023): draw noise x0, pair it with
data x1 (coupling), draw t (time sampler), form x_t and the target u_t (path), and regress the
velocity network onto u_t:

    loss = w · mean_b [ |v(x_t, t) - u_t|^2 / D ],      w = path.loss_weight,

a per-coordinate mean, so losses compare across dimensions D and (through w) across paths.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable

import torch
from torch import Tensor

from flowstudy.errors import ConfigError
from flowstudy.flows.couplings import Coupling, Independent, Paired
from flowstudy.flows.path_sample import PathSample
from flowstudy.flows.paths import InterpolantPath, Straight
from flowstudy.flows.time_samplers import TimeSampler, UniformTime


@dataclass(frozen=True)
class FlowMethod:
    """Composed flow-matching method; build by hand or with :func:`create_flow`.

    Randomness (x0 when not given, t, z) comes only from the ``generator`` passed to
    :meth:`sample_path` / :meth:`loss`, or torch's global RNG when it is None, so a seeded
    generator makes a run deterministic. The generator must live on the data's device
    (``torch.Generator(device=x1.device)``). Draw order: x0, coupling, t, z.
    """

    path: InterpolantPath = field(default_factory=Straight)
    coupling: Coupling = field(default_factory=Independent)
    time_sampler: TimeSampler = field(default_factory=UniformTime)
    name: str = "custom"

    @property
    def loss_weight(self) -> float:
        """The path's loss weight (see :mod:`flowstudy.flows.paths`)."""
        return self.path.loss_weight

    def sample_path(
        self, x1: Tensor, x0: Tensor | None = None, generator: torch.Generator | None = None
    ) -> PathSample:
        """Draw a training batch on the path.

        Parameters
        ----------
        x1: [B, D] data rows.
        x0: [B, D] source rows; drawn as N(0, I) when None (a ``paired`` coupling needs them).
        generator: source of all randomness, on x1's device.
        """
        _check_inputs(x1, x0, generator)
        if x0 is None:
            if self.coupling.requires_x0:
                raise ConfigError(f"flow {self.name!r} uses a paired coupling: pass x0 with x1 (e.g. reflow pairs)")
            x0 = self.draw_source(x1, generator)
        x0, x1 = self.coupling(x0, x1, generator)
        t = self.time_sampler(x1.shape[0], device=x1.device, dtype=x1.dtype, generator=generator)  # [B]
        z = None
        if self.path.needs_noise:
            z = torch.randn(x1.shape, generator=generator, device=x1.device, dtype=x1.dtype)  # [B, D]
        x_t, u_t = self.path.interpolate(x0, x1, t, z)
        return PathSample(t=t, x_t=x_t, u_t=u_t, x0=x0, x1=x1)

    @staticmethod
    def draw_source(x1: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """x0 ~ N(0, I) in x1's shape, dtype and device: :meth:`sample_path`'s first draw when x0 is not given."""
        return torch.randn(x1.shape, generator=generator, device=x1.device, dtype=x1.dtype)  # [B, D]

    def with_pairs_given(self) -> FlowMethod:
        """This method with its coupling replaced by the identity (:class:`Paired`): for callers that
        drew x0 (:meth:`draw_source`) and paired the rows themselves, e.g. a training step that
        solves an exact OT coupling between two CUDA graphs (flowstudy.train.graph)."""
        return replace(self, coupling=Paired())

    def loss(
        self,
        model: Callable[[Tensor, Tensor], Tensor],
        x1: Tensor,
        x0: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Scalar ``loss_weight · mean((model(x_t, t) - u_t)^2)`` over batch and coordinates.

        The model's output (e.g. bf16 under autocast) is compared in at least float32.
        """
        sample = self.sample_path(x1, x0, generator)
        v = model(sample.x_t, sample.t)  # [B, D]
        if v.shape != sample.u_t.shape:
            raise ValueError(f"model must return the shape of x_t {tuple(sample.u_t.shape)}; got {tuple(v.shape)}")
        return velocity_loss(v, sample.u_t, self.loss_weight)


def velocity_loss(v: Tensor, u_t: Tensor, weight: float) -> Tensor:
    """``weight · mean((v - u_t)^2)`` over batch and coordinates, in at least float32.

    v, u_t: [B, D] -> a scalar; stacked [K, B, D] -> [K], one loss per member of a group."""
    dtype = torch.promote_types(u_t.dtype, torch.float32)
    return weight * (v.to(dtype) - u_t.to(dtype)).square().mean(dim=(-2, -1))


def _check_inputs(x1: Tensor, x0: Tensor | None, generator: torch.Generator | None) -> None:
    if x1.ndim != 2 or not x1.is_floating_point():
        raise ValueError(f"x1 must be a floating [B, D] tensor; got {tuple(x1.shape)} {x1.dtype}")
    if x0 is not None and x0.shape != x1.shape:
        raise ValueError(f"x0 must have x1's shape {tuple(x1.shape)}; got {tuple(x0.shape)}")
    if generator is not None and generator.device.type != x1.device.type:
        raise ValueError(f"generator lives on {generator.device} but the data on {x1.device}; create it there")
