"""What a run's seconds were measured on: the CPU count, torch's threads, and how busy the machine was.

Wall-clock seconds are only the method's own when nothing else competes for the cores. Every logged training
step records the machine's 1-minute load average, so a report can say which runs were timed on a loaded machine
(``zotune bench`` marks them) instead of printing their seconds as if they were clean.
"""

from __future__ import annotations

import os
import statistics
from typing import Any

import torch

__all__ = ["load_average", "machine_info", "LOADED_MARGIN", "was_loaded"]

# A run was timed on a loaded machine when the mean load average over its steps exceeded the CPU count by more
# than this: half a core's worth of other work.
LOADED_MARGIN = 0.5


def load_average() -> float | None:
    """The 1-minute load average (runnable threads, the run's own included), or None where the OS has none."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):  # Windows has no load average
        return None


def machine_info() -> dict[str, Any]:
    return {"cpus": os.cpu_count(), "threads": torch.get_num_threads(),
            "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"}


def was_loaded(loads: list[float | None], cpus: int | None) -> bool | None:
    """Whether the mean of a run's recorded load averages exceeded its CPU count by more than LOADED_MARGIN;
    None when it cannot be told (no load recorded, or no CPU count)."""
    known = [load for load in loads if load is not None]
    if not known or not cpus:
        return None
    return statistics.fmean(known) > cpus + LOADED_MARGIN
