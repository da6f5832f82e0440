"""ZO-Muon (Lang et al., arXiv 2602.17155): one-sided probes in a random subspace of each matrix, and an
orthogonalised step.

Per step, with l_0 = L(θ) and l_i = L(θ + ε z_i) for N directions (``OneSidedMethod``): each weight matrix's
direction is z_i = P Ψ_i (``noise.py``: P m x r column-orthonormal, drawn every ``interval`` steps from a period
seed, Ψ_i r x n Gaussian), each other tensor's a full Gaussian. g_i = (l_i − l_0) / ε, and the subspace estimate
Ĝ = (1/N) Σ g_i Ψ_i gives the step W ← W − lr P msign(Ĝ) (``update.py``). With ``orthogonalize`` false the
optimizer's update rule takes the estimate P Ĝ as it is (the paper's subspace MeZO). The period seed is drawn
from the step's stream and kept in the method's state, so a resumed run keeps the same P.
"""

from __future__ import annotations

from typing import Any

import torch

from zotune.errors import ConfigError
from zotune.methods.base import LazySubspace, OneSidedMethod
from zotune.methods.zo_muon.config import ZOMuonConfig
from zotune.methods.zo_muon.noise import SubspaceNoise
from zotune.methods.zo_muon.update import OrthogonalizedUpdate
from zotune.perturb import NoiseSource, StepPlan

__all__ = ["ZOMuon"]


class ZOMuon(LazySubspace, OneSidedMethod):
    config: ZOMuonConfig

    def __init__(self, config: ZOMuonConfig) -> None:
        super().__init__(config)
        self._noise = SubspaceNoise(config.rank, lambda: self.period_seed)

    def noise_source(self) -> NoiseSource:
        return self._noise

    def update_rule(self, rule: Any) -> Any:
        if not self.config.orthogonalize:
            return rule
        if rule.name != "sgd":
            raise ConfigError(f"ZO-Muon's orthogonalised step replaces the update rule: use update sgd, not "
                              f"{rule.name!r} (or set orthogonalize to false)")
        return OrthogonalizedUpdate(self.config.ns_steps, self.config.vector_lr)

    def plan(self, step: int, generator: torch.Generator, sampled: StepPlan) -> StepPlan:
        self.new_period(step, generator)  # every `interval` steps, a new P for every matrix
        return super().plan(step, generator, sampled)
