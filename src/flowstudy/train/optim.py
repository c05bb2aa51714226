"""A run's optimiser: AdamW with weight decay on matrices only, and its warm-up + cosine schedule."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from flowstudy.train.config import TrainConfig
from flowstudy.train.schedule import lr_factor


def takes_weight_decay(p: torch.Tensor) -> bool:
    """Matrices take weight decay; biases, norms, A_log and D never do (as mamba_ssm does)."""
    return p.ndim >= 2 and not getattr(p, "_no_weight_decay", False)


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW's two parameter groups: the trained matrices with ``weight_decay``, the rest without."""
    trained = [p for p in model.parameters() if p.requires_grad]
    return [
        {"params": [p for p in trained if takes_weight_decay(p)], "weight_decay": weight_decay},
        {"params": [p for p in trained if not takes_weight_decay(p)], "weight_decay": 0.0},
    ]


def make_optimizer(model: nn.Module, config: TrainConfig, total_steps: int, device: torch.device):
    """(AdamW, its LambdaLR schedule) for ``model``. Fused AdamW on CUDA, where these small networks
    are launch-bound (one kernel per step); capturable (step counters on the device) when the step
    is replayed as a CUDA graph."""
    fused = {"fused": True, "capturable": config.graph} if device.type == "cuda" else {}
    optimizer = torch.optim.AdamW(param_groups(model, config.weight_decay), lr=config.lr, betas=config.betas, **fused)
    schedule = lambda s: lr_factor(s, total_steps, config.warmup_frac, config.min_lr_frac)  # noqa: E731
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)


def seek_schedule(optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.LambdaLR, step: int, factor: float) -> None:
    """Put ``scheduler`` at ``step`` with learning-rate factor ``factor``, as ``step`` calls of its
    ``step()`` leave it, for a run whose steps were taken elsewhere (a stacked group's member)."""
    scheduler.last_epoch = step
    scheduler._last_lr = [base * factor for base in scheduler.base_lrs]
    for group, lr in zip(optimizer.param_groups, scheduler._last_lr):
        group["lr"] = lr


__all__ = ["make_optimizer", "param_groups", "seek_schedule", "takes_weight_decay"]
