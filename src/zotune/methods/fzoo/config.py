"""FZOO's config: the number of one-sided probes a step and its loss-deviation normalisation."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from zotune.errors import ConfigError
from zotune.methods.base import MethodConfig, check_option_types

__all__ = ["FZOOConfig"]


@dataclass
class FZOOConfig(MethodConfig):
    """FZOO (Dang et al., arXiv 2506.09034): N one-sided Rademacher probes around one unperturbed loss, the step
    divided by the standard deviation of the N probe losses (a zeroth-order normalised SGD)."""

    perturbations: int = field(default=8, metadata={
        "help": "N, one-sided probes a step (N + 1 forward passes with the unperturbed one); at least 2 to "
                "normalise"})
    normalize: bool = field(default=True, metadata={
        "help": "divide the step by the standard deviation of the N probe losses (false: one-sided SPSA)"})
    sigma_floor: float = field(default=1e-8, metadata={
        "help": "the smallest deviation divided by: N equal losses would divide by 0"})

    def __post_init__(self) -> None:
        check_option_types(self)
        if not 1 <= self.perturbations <= 4096:
            raise ConfigError(f"Invalid perturbations: {self.perturbations!r} (must be from 1 to 4096)")
        if self.normalize and self.perturbations < 2:
            raise ConfigError("FZOO's normalisation needs perturbations >= 2 (the deviation of one loss is "
                              "undefined); set normalize to false for one-sided SPSA")
        if not (math.isfinite(self.sigma_floor) and self.sigma_floor > 0):
            raise ConfigError(f"Invalid sigma_floor: {self.sigma_floor!r} (must be a finite number > 0)")
