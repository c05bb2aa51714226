"""Device names as the user writes them ("auto", "cpu", "cuda", "cuda:1") -> torch devices."""

from __future__ import annotations

import torch

from flowstudy.errors import ConfigError

__all__ = ["resolve_device"]


def resolve_device(name: str | torch.device) -> torch.device:
    """``auto`` -> cuda when available, else cpu; ConfigError for CUDA requested without a device."""
    if isinstance(name, torch.device):
        return name
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as err:  # torch: "Expected one of cpu, cuda, ... device type at start of device string"
        raise ConfigError(f"unknown device {name!r}; valid: auto, cpu, cuda, cuda:N (a GPU's index), mps") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device '{name}' requested but no CUDA device is available")
    return device
