"""What a run's seconds were measured on: the CPU (model, count, bf16 flags), torch's threads, and how busy the
machine was.

Wall-clock seconds are only the method's own when nothing else competes for the cores. Every logged training
step records the machine's 1-minute load average, so a report can say which runs were timed on a loaded machine
(``zotune bench`` marks them) instead of printing their seconds as if they were clean.
"""

from __future__ import annotations

import os
import statistics
from typing import Any

import torch

__all__ = ["load_average", "machine_info", "cpu_info", "BF16_FLAGS", "LOADED_MARGIN", "was_loaded"]

# A run was timed on a loaded machine when the mean load average over its steps exceeded the CPU count by more
# than this: half a core's worth of other work.
LOADED_MARGIN = 0.5


def load_average() -> float | None:
    """The 1-minute load average (runnable threads, the run's own included), or None where the OS has none."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):  # Windows has no load average
        return None


# CPU flags that give bf16 matrix products in hardware: without one, bf16 is emulated and slower than fp32.
BF16_FLAGS = ("amx_bf16", "avx512_bf16")


def cpu_info() -> dict[str, Any]:
    """The CPU's model name and its bf16 flags (Linux's /proc/cpuinfo; elsewhere the platform's processor name and
    no flags), so that a figure can be traced to the kind of machine it was taken on."""
    import platform

    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and value.strip():
                    model = value.strip()
                elif key.strip() == "flags":
                    flags = set(value.split())
                if model and flags:
                    break
    except OSError:
        pass
    return {"cpu_model": model, "cpu_bf16": [flag for flag in BF16_FLAGS if flag in flags]}


def machine_info() -> dict[str, Any]:
    return {"cpus": os.cpu_count(), "threads": torch.get_num_threads(), **cpu_info(),
            "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"}


def was_loaded(loads: list[float | None], cpus: int | None) -> bool | None:
    """Whether the mean of a run's recorded load averages exceeded its CPU count by more than LOADED_MARGIN;
    None when it cannot be told (no load recorded, or no CPU count)."""
    known = [load for load in loads if load is not None]
    if not known or not cpus:
        return None
    return statistics.fmean(known) > cpus + LOADED_MARGIN
