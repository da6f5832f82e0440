"""Learning-rate schedules: ``constant``, ``linear`` and ``cosine``, with a linear warm-up and a floor.

The learning rate of a step is a pure function of where the run is, never of the clock, so a resumed run and a
replay use exactly the rates of the uninterrupted run (the seed log also records each step's rate):

    lr(step) = lr × warmup(step) × (min_lr_ratio + (1 − min_lr_ratio) × decay(progress))

- ``warmup(step) = min(1, (step + 1) / warmup_steps)``: the first step already moves (unlike a ramp from 0).
- ``progress`` is the fraction of the budget spent before the step: ``step / steps``, or with
  ``--max-forward-passes`` the larger of that and ``forward passes / max_forward_passes`` (whichever budget ends
  the run). A seconds budget never enters it: seconds are not reproducible.
- ``decay`` is 1 for ``constant``, ``1 − progress`` for ``linear``, ``(1 + cos(π · progress)) / 2`` for
  ``cosine`` (SGDR, arXiv 1608.03983, without restarts; the LDSD recipe trains with it).

The decay runs over the whole budget, warm-up included, rather than from the warm-up's end as
``transformers.get_scheduler`` does: with a pass budget the step at which warm-up ends does not fix how many
steps remain (methods spend different numbers of passes per step), and for warm-ups a few percent of the run the
two differ by less than that fraction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from zotune.errors import ConfigError
from zotune.settings import is_finite, is_int

__all__ = ["SCHEDULES", "LRSchedule", "budget_progress"]

SCHEDULES = ("constant", "linear", "cosine")


@dataclass(frozen=True)
class LRSchedule:
    """The learning rate of each step; ``TrainConfig`` takes these settings (but lr, the optimizer's) from here."""

    lr: float
    lr_scheduler: str = field(default="constant", metadata={
        "help": "learning-rate schedule over the budget: constant, linear or cosine (docs/schedules.md)"})
    warmup_steps: int = field(default=0, metadata={"help": "steps of linear warm-up from lr / N to lr"})
    min_lr_ratio: float = field(default=0.0, metadata={
        "help": "floor of the linear and cosine decay, as a fraction of lr"})

    def __post_init__(self) -> None:
        problems = []
        if self.lr_scheduler not in SCHEDULES:
            problems.append(f"Invalid lr_scheduler: {self.lr_scheduler!r} (one of {', '.join(SCHEDULES)})")
        if not is_int(self.warmup_steps) or self.warmup_steps < 0:
            problems.append(f"Invalid warmup_steps: {self.warmup_steps!r} (must be an integer >= 0)")
        if not is_finite(self.min_lr_ratio) or not 0 <= self.min_lr_ratio <= 1:
            problems.append(f"Invalid min_lr_ratio: {self.min_lr_ratio!r} (must be a number from 0 to 1)")
        if problems:
            raise ConfigError("; ".join(problems))

    @property
    def is_constant(self) -> bool:
        return self.lr_scheduler == "constant" and self.warmup_steps == 0

    def __call__(self, step: int, progress: float) -> float:
        """The learning rate of step ``step`` (0-based), ``progress`` of the budget spent before it."""
        warmup = min(1.0, (step + 1) / self.warmup_steps) if self.warmup_steps else 1.0
        progress = min(max(progress, 0.0), 1.0)
        if self.lr_scheduler == "constant":
            decay = 1.0
        elif self.lr_scheduler == "linear":
            decay = 1.0 - progress
        else:
            decay = 0.5 * (1.0 + math.cos(math.pi * progress))
        return self.lr * warmup * (self.min_lr_ratio + (1.0 - self.min_lr_ratio) * decay)


def budget_progress(step: int, steps: int, forward_passes: int, max_forward_passes: int | None) -> float:
    """The fraction of the run's budget spent before step ``step``: by steps, or by forward passes when that
    budget is given and further along."""
    progress = step / steps
    if max_forward_passes:
        progress = max(progress, forward_passes / max_forward_passes)
    return progress
