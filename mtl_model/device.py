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


def cpu_has_bf16() -> bool:
    """Whether this CPU has native bf16 instructions (AVX512-BF16 or AMX), read from /proc/cpuinfo."""
    try:
        with open("/proc/cpuinfo") as handle:
            flags = next((line for line in handle if line.startswith("flags")), "")
    except OSError:
        return False
    return any(flag in flags.split() for flag in ("avx512_bf16", "amx_bf16"))


def resolve_precision(device: str, requested: str = "auto") -> str:
    """`auto` → `bf16` where the device computes it natively (GPUs with bf16, CPUs with AVX512-BF16/AMX),
    `fp16` on older GPUs (trained with a gradient scaler), else `fp32`."""
    if requested not in ("auto", "fp32", "bf16", "fp16"):
        raise ConfigError(f"precision must be auto, fp32, bf16 or fp16, got {requested!r}")
    if requested != "auto":
        return requested
    if device == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if cpu_has_bf16() else "fp32"


def autocast_dtype(precision: str) -> torch.dtype | None:
    """The autocast dtype for a resolved precision (None: plain fp32)."""
    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
