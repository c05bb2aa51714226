"""Mamba layers for stacked training groups (flowstudy.train.stacked), which run K members' networks
as one under ``torch.func.vmap``."""

from __future__ import annotations

import torch

from flowstudy.models.ssm.backend import resolve_backend, triton_status
from flowstudy.models.ssm.bimamba_layer import BiMambaLayer
from flowstudy.models.ssm.mamba_layer import MambaLayer

__all__ = ["scans_for_vmap"]


def scans_for_vmap(module: torch.nn.Module, device: torch.device) -> list[torch.nn.Module]:
    """Switch ``module``'s Mamba layers whose "auto" would run mamba-ssm's fused scan on ``device``
    to the Triton scan, which has a vmap rule (the fused kernel has none): the same parameters and
    maths, so stacked members can run as one vmapped network. Returns the switched layers (set
    their ``backend`` back to "auto" to undo); none where Triton cannot run or "auto" would not
    pick the fused kernel."""
    layers = [m for m in module.modules() if isinstance(m, (MambaLayer, BiMambaLayer)) and m.backend == "auto"]
    if not layers or resolve_backend("auto", device) != "fused" or not triton_status()[0]:
        return []
    for layer in layers:
        layer.backend = "triton"
    return layers
