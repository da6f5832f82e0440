"""FZOO (Dang et al., arXiv 2506.09034, section 3): a batched one-sided estimate, normalised by the spread of
its losses.

Per step, with l_0 = L(theta) and l_i = L(theta + eps u_i) for N Rademacher directions u_i:

    g = 1/(eps N) sum_i (l_i - l_0) u_i,    sigma = std(l_1..l_N) (N - 1 in the denominator),
    theta <- theta - lr g / sigma.

The unperturbed loss is evaluated once, before the first probe, and shared by the N probes (N + 1 forward passes a
step). Each probe leaves its restore ``-eps u_i`` pending, so ``sgd`` folds the last one into the update. The
normalisation divides every direction's projected gradient by sigma before the update (``finish``); sigma below
``sigma_floor`` counts as the floor. With ``normalize=False`` and N = 1 the step is one-sided SPSA.
"""

from __future__ import annotations

import statistics

from zotune.errors import ConfigError
from zotune.methods.base import LossFn, Method, Probe
from zotune.methods.fzoo.config import FZOOConfig
from zotune.perturb import NOISES, NoiseSource, StepPlan

__all__ = ["FZOO"]


class FZOO(Method):
    config: FZOOConfig

    def setup(self, engine) -> None:
        super().setup(engine)
        self._at_theta: float | None = None  # l_0 of the step under way
        self.last_sigma = float("nan")

    def directions_per_step(self, n_directions: int) -> int:
        if n_directions != 1:
            raise ConfigError(f"FZOO takes its direction count from its perturbations option "
                              f"({self.config.perturbations}), not n_directions={n_directions}")
        return self.config.perturbations

    def noise_source(self) -> NoiseSource:
        return NOISES.get("rademacher")  # the paper's u_i in {-1, +1}^d

    def plan(self, step, generator, sampled: StepPlan) -> StepPlan:
        self._at_theta = None  # a new step: its l_0 is evaluated by the first probe
        return sampled

    def probe(self, loss_fn: LossFn, seed: int, eps: float, plan: StepPlan) -> Probe:
        if self._at_theta is None:
            self._at_theta = loss_fn()
        self.engine.perturb(seed, eps, plan)
        loss = loss_fn()
        return Probe(seed, (loss - self._at_theta) / eps, (loss,), restore=(seed, -eps), at_theta=self._at_theta)

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
