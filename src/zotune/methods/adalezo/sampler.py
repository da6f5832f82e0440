"""The AdaLeZO sampler: a bandit over layers that perturbs and updates only the sampled ones (arXiv 2604.18264)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from typing import Any

import torch

from zotune.errors import ConfigError, StateError
from zotune.methods.adalezo.config import AdaLeZOConfig
from zotune.methods.sampling import Sampler
from zotune.perturb import PerturbationEngine, StepPlan

__all__ = ["AdaLeZOSampler", "group_layers"]


def group_layers(names: list[str], layer_pattern: str, embed_pattern: str) -> dict[str, list[int]]:
    """Arms from parameter names: one per decoder layer, one for the embeddings, one for the rest.

    Returns:
        ``{arm name: block indices}`` in order of first appearance; empty arms are left out.
    """
    layer_re = re.compile(layer_pattern)
    arms: dict[str, list[int]] = {}
    for index, name in enumerate(names):
        match = layer_re.search(name)
        if match:
            arm = name[: match.end()].strip(".")
        elif embed_pattern in name:
            arm = "embed"
        else:
            arm = "rest"
        arms.setdefault(arm, []).append(index)
    return arms


@dataclass
class _Draw:
    """One step's draw: the sampled arms, how often each was drawn, and whether its weight was clipped."""

    arms: list[int]
    counts: list[int]
    clipped: list[bool]
    weights: list[float]


class AdaLeZOSampler(Sampler):
    r"""Adaptive layer-wise ZO sampling (arXiv 2604.18264), as a sampler for any method and update rule.

    .. math::
        \begin{aligned}
        &s = Q / \max_j Q_j, \quad p = (1-\gamma)\,\mathrm{softmax}(s/\tau) + \gamma / L \\
        &\text{draw } k = \max(1, \lfloor \rho L \rfloor) \text{ arms i.i.d. from } p;\ c_l = \#\text{draws of } l,\
            S = \{l : c_l > 0\} \\
        &\text{perturb and update only } S, \text{ layer } l \text{ with weight }
            w_l = c_l \min\!\big(1/(k p_l),\, C\big) \\
        &Q_l \leftarrow (1-\alpha) Q_l + \alpha |g| \quad (l \in S)
        \end{aligned}

    :math:`E[c_l] = k p_l`, so the estimate is unbiased while the clip :math:`C` is not hit; a clipped layer
    (rarely drawn) gets an expected weight :math:`C k p_l < 1`. With n-SPSA the reward is the mean of
    :math:`|g_i|` and the RMS scaling uses the mean of :math:`g_i^2` (choices of zotune: the paper has n = 1).

    Args:
        config: an :class:`AdaLeZOConfig`.

    Raises:
        ConfigError: the model has a single arm (nothing to sample).
    """

    def __init__(self, config: AdaLeZOConfig) -> None:
        super().__init__(config)
        self.arm_names: list[str] = []
        self.arm_blocks: list[list[int]] = []

    def setup(self, engine: PerturbationEngine) -> None:
        super().setup(engine)
        cfg = self.config
        arms = group_layers([b.name for b in engine.blocks], cfg.layer_pattern, cfg.embed_pattern)
        if len(arms) < 2:
            raise ConfigError(
                f"AdaLeZO found {len(arms)} layer arm(s) in the trainable parameters; it needs at least 2. "
                f"Check layer_pattern={cfg.layer_pattern!r} against names such as {engine.blocks[0].name!r}"
            )
        self.arm_names = list(arms)
        self.arm_blocks = list(arms.values())
        num_arms = len(arms)
        self.k = max(1, math.floor(cfg.sample_fraction * num_arms))
        self.rewards = torch.zeros(num_arms, dtype=torch.float64)
        self.probs = torch.full((num_arms,), 1.0 / num_arms, dtype=torch.float64)
        self.rms = torch.zeros(num_arms, dtype=torch.float64)
        self._reset_interval()
        self.last_draw: _Draw | None = None  # the current step's draw, for observe() and tests

    def _reset_interval(self) -> None:
        self.interval_draws = torch.zeros(len(self.arm_names), dtype=torch.int64)
        self.interval_sampled = 0
        self.interval_clipped = 0

    def plan(self, step: int, generator: torch.Generator) -> StepPlan:
        drawn = torch.multinomial(self.probs, self.k, replacement=True, generator=generator)
        counts = torch.bincount(drawn, minlength=len(self.arm_names)).tolist()
        arms = [arm for arm, count in enumerate(counts) if count > 0]
        clip = self.config.weight_clip
        inverse = [1.0 / (self.k * float(self.probs[arm])) for arm in arms]
        self.last_draw = _Draw(
            arms=arms,
            counts=[counts[arm] for arm in arms],
            clipped=[w > clip for w in inverse],
            weights=[counts[arm] * min(w, clip) for arm, w in zip(arms, inverse)],
        )
        return self._plan_with(self.last_draw.weights)

    def _plan_with(self, arm_weights: list[float]) -> StepPlan:
        pairs = sorted((b, w) for arm, w in zip(self.last_draw.arms, arm_weights) for b in self.arm_blocks[arm])
        blocks = tuple(b for b, _ in pairs)
        return StepPlan(blocks, (1.0,) * len(blocks), tuple(w for _, w in pairs))

    def reweight(self, probes: list, plan: StepPlan) -> StepPlan:
        if not self.config.rms_scaling:
            return plan
        beta = self.config.rms_beta
        mean_sq_grad = sum(p.projected_grad**2 for p in probes) / len(probes)
        weights = []
        for arm, w in zip(self.last_draw.arms, self.last_draw.weights):
            self.rms[arm] = beta * self.rms[arm] + (1 - beta) * mean_sq_grad * w * w
            weights.append(w / (math.sqrt(float(self.rms[arm])) + 1e-8))
        return replace(plan, weights=self._plan_with(weights).weights)

    def observe(self, probes: list, plan: StepPlan) -> None:
        cfg, draw = self.config, self.last_draw
        reward = sum(abs(p.projected_grad) for p in probes) / len(probes)
        for arm in draw.arms:
            self.rewards[arm] = (1 - cfg.reward_rate) * self.rewards[arm] + cfg.reward_rate * reward
        self.probs = self.sampling_probs(self.rewards)
        for arm, count in zip(draw.arms, draw.counts):
            self.interval_draws[arm] += count
        self.interval_sampled += len(draw.arms)
        self.interval_clipped += sum(draw.clipped)

    def sampling_probs(self, rewards: torch.Tensor) -> torch.Tensor:
        """p from the rewards Q: softmax of the max-normalised rewards over tau, mixed with the uniform."""
        top = float(rewards.max())
        scores = rewards / top if top > 1e-6 else rewards
        probs = torch.softmax(scores / self.config.temperature, dim=0)
        return (1 - self.config.uniform_mix) * probs + self.config.uniform_mix / len(rewards)

    def metrics(self) -> dict[str, float]:
        draw = self.last_draw
        if draw is None:
            return {}
        return {"layers_sampled": len(draw.arms), "clipped_fraction": sum(draw.clipped) / len(draw.arms)}

    def report(self) -> list[dict[str, Any]]:
        sampled = self.interval_sampled
        out = {
            "arms": list(self.arm_names),
            "draws": self.interval_draws.tolist(),
            "clipped_fraction": self.interval_clipped / sampled if sampled else 0.0,
            "probs": [round(float(p), 6) for p in self.probs],
        }
        self._reset_interval()
        return [out]

    def state_dict(self) -> dict[str, Any]:
        return {
            "arms": list(self.arm_names),
            "rewards": self.rewards.clone(),
            "probs": self.probs.clone(),
            "rms": self.rms.clone(),
            "interval_draws": self.interval_draws.clone(),
            "interval_sampled": self.interval_sampled,
            "interval_clipped": self.interval_clipped,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if list(state["arms"]) != self.arm_names:
            raise StateError(
                f"AdaLeZO state has {len(state['arms'])} arms ({state['arms'][:3]}...), this model has "
                f"{len(self.arm_names)} ({self.arm_names[:3]}...)"
            )
        self.rewards = state["rewards"].clone()
        self.probs = state["probs"].clone()
        self.rms = state["rms"].clone()
        self.interval_draws = state["interval_draws"].clone()
        self.interval_sampled = int(state["interval_sampled"])
        self.interval_clipped = int(state["interval_clipped"])
