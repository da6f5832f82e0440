"""LDSD: directions from a learned Gaussian policy N(mu, sigma^2 I), best of K one-sided candidates (arXiv 2602.13659)."""

from __future__ import annotations

import math
from typing import Any

import torch

from zotune.errors import StateError
from zotune.methods.base import LossFn, Method, Probe
from zotune.methods.ldsd.config import LDSDConfig
from zotune.methods.ldsd.policy import PolicyNoise
from zotune.perturb import NoiseSource, PerturbationEngine, StepPlan, gaussian_direction, mix_seed

__all__ = ["LDSD"]

# Every this many steps, a method record gives |mu_b| / (sigma |xi_b|) for each block b of the step.
RATIO_REPORT_STEPS = 50


class LDSD(Method):
    r"""Learned direction sampling for ZO (arXiv 2602.13659), with the correct leave-one-out estimator.

    .. math::
        \begin{aligned}
        &z_i = \mu + \sigma\,\xi_i,\ \xi_i \sim \mathcal N(0, I) \text{ from seed } s_i,\quad
            f_i = L(\theta + \epsilon z_i) \quad (i = 1..K) \\
        &i^* = \arg\min_i f_i,\quad g = \frac{f_{i^*} - L(\theta - \epsilon z_{i^*})}{2\epsilon},
            \quad \text{update fed } g\, z_{i^*} \\
        &A_i = \frac{K f_i - \sum_j f_j}{K - 1},\quad
            \hat g_\mu = \sum_i \frac{A_i (z_i - \mu)}{K \sigma^2} = \sum_i \frac{A_i\, \xi_i}{K \sigma},
            \quad \mu \leftarrow \mu - \eta_\mu \hat g_\mu
        \end{aligned}

    K + 1 forward passes per step. Every :math:`\xi_i` is regenerated from its own seed (the public code pairs
    rewards with fresh samples, a bug), and the update of :math:`\mu` comes after the step's own update, so the
    step uses :math:`\mu` from before it. Candidate 1 uses the direction seed itself, so with K = 1 and
    :math:`\eta_\mu = 0` a step is exactly MeZO's with ``noise="torch-gaussian"`` (xi comes from torch's
    generator, as before the counter-based Gaussian). :math:`\mu` is fp32, shaped like the trainable parameters
    (one θ-sized buffer); only blocks in the step's plan are updated (with a sampler, the others' losses do not
    depend on their noise).

    Args:
        config: an :class:`LDSDConfig`.
    """

    def __init__(self, config: LDSDConfig) -> None:
        super().__init__(config)
        self.mu: dict[int, torch.Tensor] = {}
        self._candidates: list[tuple[list[int], list[float], int]] = []  # per probe: seeds, losses, best
        self._metrics: dict[str, float] = {}
        self._steps = 0  # steps observed, for the per-block ratio records
        self._events: list[dict[str, Any]] = []

    def setup(self, engine: PerturbationEngine) -> None:
        super().setup(engine)
        self.mu = {b.index: torch.zeros(b.param.shape, dtype=torch.float32, device=b.param.device)
                   for b in engine.blocks}
        # mu's own engine, in the same block order, so mu_b += c xi(seed) regenerates the xi the step drew (torch's
        # generator, as the policy's, policy.py), in chunks on worker threads.
        self._mu_engine = PerturbationEngine([(b.name, self.mu[b.index]) for b in engine.blocks],
                                             "torch-gaussian")

    def noise_source(self) -> NoiseSource:
        return PolicyNoise(self.config.sigma, lambda index: self.mu[index])

    def plan(self, step: int, generator: torch.Generator, sampled: StepPlan) -> StepPlan:
        self._candidates = []  # a skipped step never reaches observe(): start clean
        return sampled

    def probe(self, loss_fn: LossFn, seed: int, eps: float, plan: StepPlan) -> Probe:
        """K one-sided candidates (each undone but the last), then L- at the best; leaves +eps z* pending."""
        count = self.config.candidates
        seeds = [seed] + [mix_seed(seed, i) for i in range(1, count)]
        losses = []
        for i, candidate in enumerate(seeds):
            self.engine.perturb(candidate, eps, plan)
            losses.append(loss_fn())
            if i < count - 1:
                self.engine.perturb(candidate, -eps, plan)
        best = min(range(count), key=lambda i: losses[i])
        if best == count - 1:  # still at theta + eps z*: one pass (and MeZO's arithmetic when K = 1)
            self.engine.perturb(seeds[best], -2.0 * eps, plan)
        else:
            self.engine.perturb(seeds[-1], -eps, plan)
            self.engine.perturb(seeds[best], -eps, plan)
        loss_minus = loss_fn()
        all_finite = all(math.isfinite(f) for f in (*losses, loss_minus))
        grad = (losses[best] - loss_minus) / (2.0 * eps) if all_finite else float("nan")
        self._candidates.append((seeds, losses, best))
        return Probe(seeds[best], grad, (*losses, loss_minus), restore=(seeds[best], eps))

    def observe(self, probes: list[Probe], plan: StepPlan) -> None:
        cfg = self.config
        if not (cfg.lr_mu > 0 and cfg.candidates > 1):  # pure best-of-K (or MeZO): mu stays 0
            self._metrics = {"mu_norm": 0.0, "mu_grad_cosine": 0.0, "mu_noise_ratio": 0.0, "mu_noise_ratio_max": 0.0}
            self._candidates = []
            return
        dot = z_sq = mu_sq = xi_sq = 0.0
        block_ratios: dict[str, float] = {}
        for probe_index, (seeds, losses, best) in enumerate(self._candidates):
            total = sum(losses)
            advantages = [(cfg.candidates * f - total) / (cfg.candidates - 1) for f in losses]
            # mu <- mu - lr * sum_i A_i xi_i / (K sigma), averaged over the step's directions.
            coefs = [-cfg.lr_mu * a / (cfg.candidates * cfg.sigma * len(self._candidates)) for a in advantages]
            if probe_index == 0:  # cos(mu, g z*) of the first direction, with mu before its update
                for b, _, _ in plan:
                    mu = self.mu[b]
                    xi = self.engine.noise(seeds[best], self.engine.blocks[b], direction=gaussian_direction)
                    block_xi_sq, block_mu_sq = float(xi.pow(2).sum()), float(mu.pow(2).sum())
                    xi_sq += block_xi_sq
                    if block_xi_sq > 0:
                        block_ratios[self.engine.blocks[b].name] = math.sqrt(block_mu_sq / block_xi_sq) / cfg.sigma
                    z_best = xi.mul(cfg.sigma).add_(mu)
                    dot += float(mu.flatten() @ z_best.flatten())
                    z_sq += float(z_best.pow(2).sum())
                    mu_sq += block_mu_sq
            self._mu_engine.apply_combinations([(self._mu_engine.blocks[b], list(zip(seeds, coefs)), 1.0)
                                                for b, _, _ in plan])
        grad = probes[0].projected_grad if probes else 0.0
        # cos(mu, g z*) = sign(g) cos(mu, z*); 0 while mu is 0 (the first step).
        cosine = dot / math.sqrt(mu_sq * z_sq) * (1.0 if grad > 0 else -1.0) if mu_sq > 0 and z_sq > 0 else 0.0
        norm = math.sqrt(sum(float(m.pow(2).sum()) for m in self.mu.values()))
        # How much the learned mean weighs in a direction z = mu + sigma xi: |mu| / (sigma |xi|), over the step's
        # blocks (mu before its update) and at the largest block. Near 0, LDSD is best-of-K sampling.
        ratio = math.sqrt(mu_sq / xi_sq) / cfg.sigma if xi_sq > 0 else 0.0
        self._metrics = {"mu_norm": norm, "mu_grad_cosine": cosine, "mu_noise_ratio": ratio,
                         "mu_noise_ratio_max": max(block_ratios.values(), default=0.0)}
        self._steps += 1
        if self._steps % RATIO_REPORT_STEPS == 0:
            self._events.append({"event": "mu_noise_ratio", "ratio": ratio, "blocks": block_ratios})
        self._candidates = []

    def report(self) -> list[dict[str, Any]]:
        events, self._events = self._events, []
        return events

    def metrics(self) -> dict[str, float]:
        return dict(self._metrics)

    def state_dict(self) -> dict[str, Any]:
        return {"mu": {self.engine.blocks[i].name: m.clone() for i, m in self.mu.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        by_name = {b.name: b for b in self.engine.blocks}
        mu = state["mu"]
        mismatch = sorted(set(mu) ^ set(by_name))
        if mismatch:
            raise StateError(f"LDSD's mu does not match the trainable parameters: {mismatch[:4]}")
        for name, tensor in mu.items():
            block = by_name[name]
            if tensor.shape != block.param.shape:
                raise StateError(f"LDSD's mu for {name!r} has shape {tuple(tensor.shape)}, "
                                 f"the parameter has {tuple(block.param.shape)}")
            self.mu[block.index].copy_(tensor)  # in place: mu's engine holds these tensors
