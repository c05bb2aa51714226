"""Learning-rate schedule and EMA decay as pure functions of the optimiser step.

Both are defined relative to the run's length: a fixed 1000-step warm-up never ends in a
run of 300 steps, and a fixed 0.9999 EMA never leaves its initial weights in one of 3000.
"""

from __future__ import annotations

import math


def lr_factor(step: int, total_steps: int, warmup_frac: float, min_lr_frac: float) -> float:
    """Multiplier of the base learning rate at optimiser step ``step`` (0-based).

    Linear warm-up over ``w = max(1, round(warmup_frac * total))`` steps to 1, then cosine decay
    reaching ``m = min_lr_frac`` at the last step (step = total - 1):
        f = (step + 1) / w                                                  for step < w
        f = m + (1 - m) * (1 + cos(pi * (step - w) / (total - 1 - w))) / 2  otherwise
    """
    warmup = max(1, round(warmup_frac * total_steps)) if warmup_frac > 0 else 0
    if step < warmup:
        return (step + 1) / warmup
    span = max(1, total_steps - 1 - warmup)
    progress = min(1.0, (step - warmup) / span)
    return min_lr_frac + (1 - min_lr_frac) * 0.5 * (1 + math.cos(math.pi * progress))


def ema_decay_at(step: int, decay: float) -> float:
    """EMA decay after ``step`` updates: min(decay, (1 + step) / (10 + step)).

    The warm-up makes early averages follow the weights (decay 0.1 at the first update) and
    reaches the target after about 10 / (1 - decay) steps.
    """
    return min(decay, (1 + step) / (10 + step))
