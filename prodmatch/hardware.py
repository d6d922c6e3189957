"""What the machine can do: the torch device to use, whether bf16 is fast here, measured matrix FLOP/s, how
much memory a computation may take, and how many cores this process may use.

One probe for the whole package: `embed.encoders` picks its precision with `auto_precision`, `match.exact` picks
its candidate precision with `fast_bf16`, `quality.finetune` resolves its device here, the benchmarks report
`matmul_flops` as the machine's ceiling, `match.hybrid` / `match.scoring` size their threads with
`usable_cores`, and `match.link` / `dedupe` / `index check` compare their memory
estimates with `memory_budget` (the container's limit, not the host's RAM). It knows nothing of models or the
database.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

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


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity, which a container's cpuset narrows), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


# --- memory ---------------------------------------------------------------------------------------------------

# Share of the available memory one computation may plan to take: the rest is for the interpreter, torch's
# threads and what the estimate leaves out (the other processes keep allocating meanwhile too).
MEMORY_SHARE = 0.7
_NO_LIMIT = 2**60  # cgroup v1 writes "no limit" as a number near 2**63
_CGROUP = Path("/sys/fs/cgroup")


@dataclass(frozen=True)
class MemoryBudget:
    """Bytes a computation may take, and where that figure came from (for messages)."""

    bytes: int
    source: str  # "PRODMATCH_MEMORY_BUDGET", "cgroup memory.max", "MemAvailable", ...

    def to_text(self) -> str:
        return f"{format_bytes(self.bytes)} ({self.source})"


def memory_budget(override: int | None = None) -> MemoryBudget:
    """What one computation may take: `override` (the PRODMATCH_MEMORY_BUDGET setting) as given, else
    MEMORY_SHARE of the memory available now: the cgroup's headroom (a container's memory.max) when there is a
    limit, else /proc/meminfo MemAvailable, whichever is smaller."""
    if override is not None:
        return MemoryBudget(int(override), "PRODMATCH_MEMORY_BUDGET")
    found = [m for m in (_cgroup_headroom(), _mem_available()) if m is not None]
    if not found:  # not Linux: no probe; a generous guess, which the setting can lower
        return MemoryBudget(8 * 2**30, "default, no memory probe on this system")
    available, source = min(found)
    return MemoryBudget(
        int(available * MEMORY_SHARE), f"{MEMORY_SHARE:.0%} of {format_bytes(available)} {source}"
    )


def format_bytes(n: float) -> str:
    """1536 -> "1.5 KiB"."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def _cgroup_headroom() -> tuple[int, str] | None:
    """(limit - usage + reclaimable page cache, source) of this process's memory cgroup, if it has a limit."""
    for limit_file, usage_file, inactive_key, name in (
        ("memory.max", "memory.current", "inactive_file", "cgroup memory.max"),  # v2
        (
            "memory/memory.limit_in_bytes",
            "memory/memory.usage_in_bytes",
            "total_inactive_file",
            "cgroup v1 limit",
        ),
    ):
        limit = _read_int(_CGROUP / limit_file)
        if limit is None or limit >= _NO_LIMIT:
            continue
        usage = _read_int(_CGROUP / usage_file) or 0
        stat = _CGROUP / limit_file.replace(limit_file.rsplit("/", 1)[-1], "memory.stat")
        inactive = _stat_value(stat, inactive_key)
        return max(limit - usage + inactive, 0), f"left under the {name} of {format_bytes(limit)}"
    return None


def _mem_available() -> tuple[int, str] | None:
    value = _stat_value(Path("/proc/meminfo"), "MemAvailable:")
    return (value * 1024, "MemAvailable") if value else None


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None  # "max": no limit


def _stat_value(path: Path, key: str) -> int:
    try:
        for line in path.read_text().splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0] == key:
                return int(parts[1])
    except (OSError, ValueError):
        pass
    return 0
