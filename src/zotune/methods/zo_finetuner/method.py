"""The ZO Fine-tuner step: MeZO with each block's perturbation scaled by its controller's normalised sigma."""

from __future__ import annotations

from typing import Any

import torch

from zotune.errors import StateError
from zotune.methods.base import Method, Probe
from zotune.methods.zo_finetuner.config import ZOFinetunerConfig
from zotune.methods.zo_finetuner.controller import (
    ControllerBank,
    block_counts,
    block_features,
    normalised_scales,
    output_tied,
    resolve_controller,
)
from zotune.perturb import PerturbationEngine, StepPlan

__all__ = ["ZOFinetuner", "ControllerState"]


class ControllerState:
    """What the controllers see of the past: the previous step's (L+, L-) and sigmas (start: 0, 0 and 1)."""

    def __init__(self, blocks: int) -> None:
        self.losses = (0.0, 0.0)
        self.sigma = torch.ones(blocks, dtype=torch.float32)

    def remember(self, probes: list[Probe], sigma: torch.Tensor) -> None:
        # With n directions, the probes' mean L+ and L- (each probe's first two losses).
        self.losses = tuple(sum(p.losses[k] for p in probes) / len(probes) for k in (0, 1))
        self.sigma = sigma.detach().float().clone()

    def state_dict(self) -> dict[str, Any]:
        return {"losses": list(self.losses), "sigma": self.sigma.clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["sigma"].shape != self.sigma.shape:
            raise StateError(f"ZO Fine-tuner state holds {state['sigma'].numel()} sigmas, the model has "
                             f"{self.sigma.numel()} blocks")
        self.losses = tuple(float(x) for x in state["losses"])
        self.sigma = state["sigma"].float().clone()


class ZOFinetuner(Method):
    r"""ZO Fine-tuner (arXiv 2510.00419): a learned per-block perturbation scale.

    Each step, every block's controller maps :math:`x_b = [\mathrm{mean}\,\theta_b, \mathrm{var}\,\theta_b,
    L^+_{t-1}, L^-_{t-1}, \sigma_{b,t-1}]` to :math:`\sigma_b`; with :math:`c = \sqrt{\sum_b n_b} / \sqrt{\sum_b
    n_b \sigma_b^2}` the step is MeZO's with direction :math:`u_b = c \sigma_b z_b`:

    .. math::
        g = \frac{L(\theta + \epsilon u) - L(\theta - \epsilon u)}{2\epsilon}, \qquad
        \theta_b \leftarrow \theta_b - \eta\, g\, c \sigma_b z_b

    The total perturbation energy is MeZO's; the controller only shares it out between blocks. With all
    sigmas equal the step is exactly MeZO's. Scales are plan scales, so the method composes with every sampler
    (normalised over the blocks the sampler chose) and update rule, and replays from the seed log (the sigmas
    are recomputed from the weights and the logged losses).

    Args:
        config: a :class:`ZOFinetunerConfig`.

    Raises:
        ConfigError: the controller is missing or does not fit the model's trainable tensors.
    """

    def __init__(self, config: ZOFinetunerConfig) -> None:
        super().__init__(config)
        self.bank: ControllerBank | None = None
        self.source = ""
        self.counts = torch.zeros(0, dtype=torch.float64)
        self.state = ControllerState(0)
        self._sigma = torch.zeros(0)
        self._tied: frozenset[str] = frozenset()

    def see_model(self, model: torch.nn.Module | None) -> None:
        self._tied = output_tied(model)

    def setup(self, engine: PerturbationEngine) -> None:
        super().setup(engine)
        self.bank, self.source = resolve_controller(self.config.controller, engine.blocks)
        self.bank.requires_grad_(False)
        self.counts = block_counts(engine.blocks, rule=self.config.embedding_rule,
                                   touched_rows=self.config.touched_rows, pattern=self.config.embedding_pattern,
                                   tied=self._tied)
        self.state = ControllerState(len(engine))

    def check_settings(self, lr: float, eps: float) -> None:
        """A controller is meta-trained for one model learning rate (the recipe's alpha, in its metadata): used at an
        lr more than a half-decade (3x) off, the scales it learned answer steps of another size."""
        import json
        import math
        import warnings

        from zotune.errors import ZotuneWarning

        recipe = self.bank.metadata.get("recipe", {})
        try:
            alpha = float((json.loads(recipe) if isinstance(recipe, str) else recipe).get("alpha"))
        except (TypeError, ValueError, AttributeError):
            return  # a controller without a recorded recipe
        if alpha > 0 and lr > 0 and abs(math.log10(lr / alpha)) > math.log10(3):
            warnings.warn(f"The ZO Fine-tuner controller {self.source} was meta-trained at alpha {alpha:g}, and runs "
                          f"at lr {lr:g} ({lr / alpha:.3g}x): its learned scales may not fit steps of this size "
                          "(meta-train one at this lr: zotune meta-train --alpha)", ZotuneWarning, stacklevel=4)

    @torch.no_grad()
    def sigmas(self) -> torch.Tensor:
        """Every block's sigma at the current weights and history."""
        return self.bank(block_features(self.engine.blocks, self.state.losses, self.state.sigma))

    def plan(self, step: int, generator: torch.Generator, sampled: StepPlan) -> StepPlan:
        self._sigma = self.sigmas()
        chosen = list(sampled.blocks)
        scales = normalised_scales(self._sigma[chosen], self.counts[chosen])
        return StepPlan(sampled.blocks, tuple(float(s) * base for s, base in zip(scales, sampled.scales)),
                        sampled.weights)

    def observe(self, probes: list[Probe], plan: StepPlan) -> None:
        self.state.remember(probes, self._sigma)

    def metrics(self) -> dict[str, float]:
        if not self._sigma.numel():
            return {}
        scales = normalised_scales(self._sigma, self.counts)
        return {"scale_min": float(scales.min()), "scale_max": float(scales.max())}

    def state_dict(self) -> dict[str, Any]:
        return self.state.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.state.load_state_dict(state)
