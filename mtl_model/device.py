"""Device and precision, decided once at the entry point and passed down as plain strings."""

from __future__ import annotations

import torch

from mtl_model.errors import ConfigError


def resolve_device(requested: str = "auto") -> str:
    """`auto` → `cuda` when a GPU is visible, else `cpu`. Asking for `cuda` without one is an error."""
    if requested not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"--device must be auto, cpu or cuda, got {requested!r}")
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda was requested but no CUDA device is visible to PyTorch")
    return requested


def autocast_dtype(device: str) -> torch.dtype | None:
    """Mixed precision to train with: bf16 on GPUs that support it; None (fp32) elsewhere."""
    if device == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return None
