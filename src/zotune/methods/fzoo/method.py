"""FZOO (Dang et al., arXiv 2506.09034, section 3): a batched one-sided estimate, normalised by the spread of
its losses.

Per step, with l_0 = L(theta) and l_i = L(theta + eps u_i) for N Rademacher directions u_i:

    g = 1/(eps N) sum_i (l_i - l_0) u_i,    sigma = std(l_1..l_N) (N - 1 in the denominator),
    theta <- theta - lr g / sigma.

The unperturbed loss is evaluated once, before the first probe, and shared by the N probes (N + 1 forward passes a
step; ``OneSidedMethod``). Each probe leaves its restore ``-eps u_i`` pending, so ``sgd`` folds the last one into
the update. The normalisation divides every direction's projected gradient by sigma before the update
(``finish``); sigma below ``sigma_floor`` counts as the floor. With ``normalize=False`` and N = 1 the step is
one-sided SPSA.
"""

from __future__ import annotations

import statistics

from zotune.methods.base import OneSidedMethod, Probe
from zotune.methods.fzoo.config import FZOOConfig
from zotune.perturb import NOISES, NoiseSource

__all__ = ["FZOO"]


class FZOO(OneSidedMethod):
    config: FZOOConfig

    def setup(self, engine) -> None:
        super().setup(engine)
        self.last_sigma = float("nan")

    def noise_source(self) -> NoiseSource:
        return NOISES.get("rademacher")  # the paper's u_i in {-1, +1}^d

    def finish(self, probes: list[Probe]) -> list[Probe]:
        if not self.config.normalize:
            return probes
        # finish() sees finite probes only: the optimizer skips a step with a non-finite loss before it.
        self.last_sigma = statistics.stdev(p.losses[0] for p in probes)
        scale = 1.0 / max(self.last_sigma, self.config.sigma_floor)
        for p in probes:
            p.projected_grad *= scale
        return probes

    def metrics(self) -> dict[str, float]:
        return {"loss_sigma": self.last_sigma} if self.config.normalize else {}
