"""LDSD's config: the candidate count, the policy's spread and the learning rate of its mean."""

from __future__ import annotations

from dataclasses import dataclass, field

from zotune.errors import ConfigError
from zotune.methods.base import MethodConfig, check_option_types

__all__ = ["LDSDConfig"]


@dataclass
class LDSDConfig(MethodConfig):
    """LDSD (arXiv 2602.13659): directions z ~ N(mu, sigma^2 I) with a learned mean, best of K candidates."""

    candidates: int = field(default=5, metadata={"help": "K: one-sided candidates per step (K + 1 forward passes)"})
    sigma: float = field(default=1.0, metadata={"help": "sigma: fixed spread of the direction policy"})
    # eta_mu 3e-3: the lr sweep's choice over the paper's range 1e-3..6e-3 (docs/results.md).
    lr_mu: float = field(default=3e-3, metadata={"help": "eta_mu: learning rate of mu (0: pure best-of-K)"})

    def __post_init__(self) -> None:
        check_option_types(self)
        problems = []
        if self.candidates < 1:
            problems.append(f"Invalid candidates: {self.candidates!r} (must be an integer >= 1)")
        if not self.sigma > 0:
            problems.append(f"Invalid sigma: {self.sigma!r} (must be > 0)")
        if not self.lr_mu >= 0:
            problems.append(f"Invalid lr_mu: {self.lr_mu!r} (must be >= 0)")
        if problems:
            raise ConfigError("; ".join(problems))
