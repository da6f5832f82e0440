"""ZO-Muon's config: the queries a step, the subspace each matrix is probed in, and its orthogonalised step."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from zotune.errors import ConfigError
from zotune.methods.base import MethodConfig, check_option_types

__all__ = ["ZOMuonConfig"]


@dataclass
class ZOMuonConfig(MethodConfig):
    """ZO-Muon (Lang et al., arXiv 2602.17155): N one-sided probes of each weight matrix W (m x n) along P Ψ_i, with
    P (m x r) column-orthonormal and kept for ``interval`` steps, Ψ_i (r x n) Gaussian; the step is
    W <- W - lr P msign(Ĝ), Ĝ the subspace estimate (r x n) and msign its Newton-Schulz orthogonalisation.
    Defaults: the public code's ZO-Muon command (4 queries, rank 64, P drawn every 100 steps)."""

    perturbations: int = field(default=4, metadata={
        "help": "N, one-sided probes a step around one unperturbed loss (N + 1 forward passes a step)"})
    rank: int = field(default=64, metadata={
        "help": "r, the dimension of each matrix's subspace (at most its row count)"})
    interval: int = field(default=100, metadata={
        "help": "steps for which each matrix's projection P is kept before it is drawn anew"})
    orthogonalize: bool = field(default=True, metadata={
        "help": "step along P msign(Ĝ) (true: ZO-Muon) or along P Ĝ with the update rule (false: the paper's "
                "subspace MeZO)"})
    ns_steps: int = field(default=5, metadata={
        "help": "Newton-Schulz iterations that approximate msign"})
    vector_lr: float = field(default=1e-7, metadata={
        "help": "the step size of tensors that are not matrices (norm scales, biases), which take a plain SGD "
                "step on a full Gaussian estimate, not scheduled (the public code's constant)"})

    def __post_init__(self) -> None:
        check_option_types(self)
        if not 1 <= self.perturbations <= 4096:
            raise ConfigError(f"Invalid perturbations: {self.perturbations!r} (must be from 1 to 4096)")
        if not 1 <= self.rank <= 4096:
            raise ConfigError(f"Invalid rank: {self.rank!r} (must be from 1 to 4096)")
        if self.interval < 1:
            raise ConfigError(f"Invalid interval: {self.interval!r} (must be an integer >= 1)")
        if not 1 <= self.ns_steps <= 100:
            raise ConfigError(f"Invalid ns_steps: {self.ns_steps!r} (must be from 1 to 100)")
        if not (math.isfinite(self.vector_lr) and self.vector_lr >= 0):
            raise ConfigError(f"Invalid vector_lr: {self.vector_lr!r} (must be a finite number >= 0)")
