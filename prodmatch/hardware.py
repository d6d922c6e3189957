"""What the machine can do: the torch device to use, whether bf16 is fast here, and measured matrix FLOP/s.

One probe for the whole package: `embed.encoders` picks its precision with `auto_precision`, `match.exact` picks
its candidate precision with `fast_bf16`, `quality.finetune` resolves its device here, and the benchmarks report
`matmul_flops` as the machine's ceiling. It knows nothing of models or the database.
"""

from __future__ import annotations

import math
import time

import torch

from prodmatch.errors import ConfigError


def resolve_device(device: str | torch.device | None) -> torch.device:
    """The torch device for a name ("cpu", "cuda", "cuda:1", "mps"); None means CUDA when available."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        torch_device = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ConfigError(f"unknown device {device!r}: use cpu, cuda, cuda:N or mps") from error
    if torch_device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} requested but CUDA is not available; use --device cpu")
    if torch_device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"device {device!r} requested but MPS is not available; use --device cpu")
    return torch_device


def cpu_has_native_bf16() -> bool:
    """True when the CPU computes bf16 matrix products in hardware (AVX512-BF16 or AMX) through oneDNN."""
    try:
        native = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
        return bool(native and torch.backends.mkldnn.is_available())
    except (AttributeError, RuntimeError):  # private helpers; missing in some torch builds
        return False


def fast_bf16(device: torch.device | None = None) -> bool:
    """Whether bf16 matrix multiplication is fast on `device` (default: the one `resolve_device(None)` picks).

    A CUDA GPU with bf16 support, or a CPU with AVX512-BF16 or AMX; elsewhere bf16 is emulated and slower than fp32.
    """
    device = resolve_device(None) if device is None else device
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and cpu_has_native_bf16()


def auto_precision(device: torch.device) -> str:
    """The precision "auto" means on `device`: bf16 where it is fast, fp16 on an older GPU, else fp32."""
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if fast_bf16(device) else "fp32"


def matmul_flops(
    dtype: torch.dtype = torch.bfloat16,
    size: int = 2048,
    repeat: int = 3,
    device: str | torch.device | None = None,
) -> float:
    """Measured FLOP/s of a (size x size) @ (size x size) matrix multiplication in `dtype`, best of `repeat`."""
    torch_device = resolve_device(device)
    a = torch.randn(size, size, device=torch_device).to(dtype)
    b = torch.randn(size, size, device=torch_device).to(dtype)
    best = math.inf
    for attempt in range(repeat + 1):
        synchronize(torch_device)
        started = time.perf_counter()
        a @ b
        synchronize(torch_device)
        if attempt:  # the first run warms up
            best = min(best, time.perf_counter() - started)
    return 2.0 * size**3 / best


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so that a timer around it measures the work (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
