"""Time-to-loss: the forward passes and seconds a run needs to reach a reference run's final training loss.

AdaLeZO (arXiv 2604.18264) claims a 1.7–3.0× wall-clock speed-up over MeZO, and DiZO (arXiv 2502.03304) up to
48% fewer GPU hours at equal accuracy; this is the measure that answers both on one footing. One SPSA step's loss is one batch's, so a run's loss at a point is the mean
over a trailing window of its steps, the same window its final training loss is the mean of: a run whose final
loss is at or below the target always reaches it, and the reference run reaches its own at its last step at the
latest.
"""

from __future__ import annotations

import math
import statistics
from typing import Any

__all__ = ["FINAL_LOSS_FRACTION", "final_train_loss", "first_reach"]

# The final training loss is the mean loss over the last 10% of logged steps: one SPSA step's loss is one batch's,
# too noisy to rank methods by.
FINAL_LOSS_FRACTION = 0.1


def _window(count: int) -> int:
    return max(1, math.ceil(FINAL_LOSS_FRACTION * count))


def final_train_loss(losses: list[float]) -> float | None:
    """The mean of the last 10% of a run's step losses (None for a run with none)."""
    return statistics.fmean(losses[-_window(len(losses)):]) if losses else None


def first_reach(curve: list[dict[str, Any]], target: float, window: int | None = None) -> dict[str, Any] | None:
    """The first training record at which the trailing mean loss over ``window`` steps (by default the final-loss
    window) is at or below ``target``, or None if the run never gets there. Records need ``loss``; ``None``
    losses (skipped steps) are left out, as they are from the final loss."""
    records = [r for r in curve if r.get("loss") is not None]
    window = min(window or _window(len(records)), len(records))
    losses = [r["loss"] for r in records]
    for end in range(window, len(records) + 1):
        # fmean over the same slice as final_train_loss, so the last window compares bit-equal with it
        if statistics.fmean(losses[end - window:end]) <= target:
            return records[end - 1]
    return None
