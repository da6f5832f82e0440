"""LOZO's config: the rank of each matrix's perturbation and how long its right factor is kept."""

from __future__ import annotations

from dataclasses import dataclass, field

from zotune.errors import ConfigError
from zotune.methods.base import MethodConfig, check_option_types

__all__ = ["LOZOConfig"]


@dataclass
class LOZOConfig(MethodConfig):
    """LOZO (Chen et al., arXiv 2410.07698): each weight matrix perturbed along a rank-r direction U Vᵀ, with V
    kept for ``interval`` steps (lazy sampling) and U drawn anew every step; with ``beta`` > 0, LOZO-M."""

    rank: int = field(default=2, metadata={"help": "r, the rank of each matrix's perturbation U V^T"})
    interval: int = field(default=50, metadata={"help": "nu, steps for which V is kept before it is drawn anew"})
    beta: float = field(default=0.0, metadata={
        "help": "LOZO-M: the decay of its momentum, kept as low-rank factors (the paper's 0.9; needs update sgd, "
                "which it replaces); 0: LOZO"})

    def __post_init__(self) -> None:
        check_option_types(self)
        if not 1 <= self.rank <= 1024:
            raise ConfigError(f"Invalid rank: {self.rank!r} (must be from 1 to 1024)")
        if self.interval < 1:
            raise ConfigError(f"Invalid interval: {self.interval!r} (must be an integer >= 1)")
        if not 0.0 <= self.beta < 1.0:
            raise ConfigError(f"Invalid beta: {self.beta!r} (must be a number in [0, 1))")
