"""K copies of one network, stacked along a leading axis and evaluated at once.

A stacked group's step (:mod:`flowstudy.train.stacked`) calls its members' K networks with their
stacked weights [K, ...]: one vmapped forward (``torch.func.functional_call`` under ``vmap``:
batched matrix products) where the network runs under vmap, else member by member inside the
same step (mamba_ssm's fused scan, an old-style autograd Function). Optionally through
``torch.compile`` (:class:`CompiledOrPlain`).
"""

from __future__ import annotations

import copy
import sys

import torch
from torch import Tensor, nn

from flowstudy.models.ssm.stacking import scans_for_vmap


class StackedNetwork:
    """The K networks of a group, one architecture: :meth:`velocities` maps x [K, B, D] and t [K, B]
    to [K, B, D] with parameters [K, ...] (in ``names`` order) and buffers [K, ...].

    ``vmap``: batch the K networks with vmap (None: where :meth:`runs_under_vmap` finds that
    they do, probed with ``params`` on inputs of the step's ``shape``, [B, D]). mamba-ssm's fused scan cannot be vmapped:
    the group's network scans on Triton where "auto" would pick it (the members' own models keep
    "auto"), unless that does not vmap either.
    """

    def __init__(
        self, net: nn.Module, names: list[str], buffers: dict[str, Tensor], params: list[Tensor], shape: tuple[int, int], *,
        vmap: bool | None = None,
    ):
        self.template = copy.deepcopy(net).to("meta")  # the network's structure; weights come per call
        self.names, self.buffers, self.K = names, buffers, params[0].shape[0]
        device = params[0].device
        switched = scans_for_vmap(self.template, device) if vmap is not False else []
        self.vmapped = self.runs_under_vmap(params, shape) if vmap is None else vmap
        for layer in switched if not self.vmapped else []:
            layer.backend = "auto"
        if switched and self.vmapped:
            print(f"group network runs its {len(switched)} Mamba scans on Triton: mamba-ssm's fused scan cannot be vmapped", file=sys.stderr)

    def velocities(self, x: Tensor, t: Tensor, params: list[Tensor]) -> Tensor:
        """The K networks at x: [K, B, D], t: [K, B] -> [K, B, D]."""
        return self._apply(x, t, params, self.vmapped)

    def _apply(self, x: Tensor, t: Tensor, params: list[Tensor], vmapped: bool) -> Tensor:
        from torch.func import functional_call, vmap

        def one(p: list[Tensor], b: dict, xk: Tensor, tk: Tensor) -> Tensor:
            return functional_call(self.template, ({**dict(zip(self.names, p)), **b}), (xk, tk))

        if vmapped:
            return vmap(one)(params, self.buffers, x, t)
        return torch.stack([one([p[k] for p in params], {n: b[k] for n, b in self.buffers.items()}, x[k], t[k]) for k in range(self.K)])

    def runs_under_vmap(self, params: list[Tensor], shape: tuple[int, int]) -> bool:
        """Whether the network runs under vmap (a forward and backward on inputs [K, *shape]).

        The probe is the network's first run: with Triton kernels (the Mamba scans) it compiles them,
        at the step's batch size so that the step finds the same specialisation compiled (Triton
        compiles again for row counts of another divisibility). Probes of one architecture run at
        once in the study's threads: taking turns (a lock per family) made the Mamba groups' setup
        longer on an H200, 24.5-41.3 s against 21.6-21.9 s (benchmarks/RESULTS.md)."""
        device = params[0].device
        x = torch.zeros(self.K, *shape, device=device)  # [K, B, D]
        t = torch.full((self.K, shape[0]), 0.5, device=device)  # [K, B]
        probe = [p.detach().clone().requires_grad_(True) for p in params]
        try:
            self._apply(x, t, probe, vmapped=True).sum().backward()
            return True
        except Exception:  # e.g. an autograd.Function without a vmap rule
            return False


class CompiledOrPlain:
    """``fn`` through ``torch.compile`` (static shapes); if compiling fails on the first call (e.g.
    vmapped Mamba scans, which dynamo cannot batch), ``fn`` itself from then on, with a message."""

    def __init__(self, fn, mode: str):
        self.fn, self.compiled, self.failure, self.traced = fn, torch.compile(fn, mode=mode, dynamic=False), None, False

    def __call__(self, *args):
        if self.compiled is None:
            return self.fn(*args)
        if self.traced:  # later errors are the network's own: raised
            return self.compiled(*args)
        try:
            out = self.compiled(*args)
        except Exception as err:  # raised while tracing, before anything ran
            self.compiled, self.failure = None, f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"[:300]
            print(f"group network runs uncompiled: torch.compile failed ({self.failure})", file=sys.stderr)
            return self.fn(*args)
        self.traced = True
        return out


__all__ = ["CompiledOrPlain", "StackedNetwork"]
