"""LOZO (Chen et al., arXiv 2410.07698, section 3): two-point SPSA along low-rank directions with a lazy subspace.

For a weight matrix W (m x n) the direction is z = U Vᵀ with U ~ N(0, 1)^{m x r} drawn every step and
V ~ N(0, 1)^{n x r} drawn every ``interval`` steps and kept in between; a tensor that is not a matrix (a norm
scale, a bias) gets a full Gaussian z, as in the public code. The estimate is MeZO's,
g = (L(θ + εz) − L(θ − εz)) / (2ε), and the update rule moves the weights along g z (``sgd``: the paper's
W ← W − η g U Vᵀ). V is never stored: at the start of each period the method draws a period seed from the step's
own stream, and V is regenerated from it and the block's index (``noise.py``); the seed is in the method's
state, so a resumed run keeps the same V. With ``beta`` > 0 the update is LOZO-M's (``momentum.py``).
"""

from __future__ import annotations

from typing import Any

import torch

from zotune.errors import ConfigError
from zotune.methods.base import LazySubspace, Method
from zotune.methods.lozo.config import LOZOConfig
from zotune.methods.lozo.momentum import LowRankMomentum
from zotune.methods.lozo.noise import LowRankNoise
from zotune.perturb import NoiseSource, StepPlan

__all__ = ["LOZO"]


class LOZO(LazySubspace, Method):
    config: LOZOConfig

    def noise_source(self) -> NoiseSource:
        return LowRankNoise(self.config.rank, lambda: self.period_seed)

    def update_rule(self, rule: Any) -> Any:
        if not self.config.beta:
            return rule
        if rule.name != "sgd":
            raise ConfigError(f"LOZO-M (beta {self.config.beta}) keeps its own low-rank momentum in place of the "
                              f"update rule: use update sgd, not {rule.name!r}")
        return LowRankMomentum(self.config.beta)

    def plan(self, step: int, generator: torch.Generator, sampled: StepPlan) -> StepPlan:
        self.new_period(step, generator)  # every `interval` steps, a new V for every matrix
        return sampled
