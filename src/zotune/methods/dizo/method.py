"""DiZO: ZO steps plus, every kappa steps, a ZO-learned projection of each tensor's distance from θ₀ (arXiv 2502.03304)."""

from __future__ import annotations

import math
import re
import warnings
from typing import Any

import torch

from zotune.errors import ConfigError, StateError, ZotuneWarning
from zotune.methods.base import FreshLossFn, LossFn, Method
from zotune.methods.dizo.config import DiZOConfig
from zotune.perturb import Block, PerturbationEngine

__all__ = ["DiZO"]


class DiZO(Method):
    r"""Divergence-driven zeroth-order optimisation (arXiv 2502.03304).

    Plain ZO steps; after every step t with :math:`(t + 1) \bmod \kappa = 0`, a projection round over the
    projected tensors :math:`P` (anchor :math:`\theta_0`: their pretrained values):

    .. math::
        \begin{aligned}
        &n_i = \lVert \theta_i - \theta_{0,i} \rVert_F,\quad \gamma_i \leftarrow n_i \\
        &\textbf{repeat } J \textbf{ times, on a fresh batch:}\quad
            u_i \sim \mathcal N(0, 1) \text{ clipped to } \pm \tfrac{\tau}{\epsilon_p} n_i \\
        &\qquad \hat g = \frac{L(\theta(\gamma + \epsilon_p u)) - L(\theta(\gamma - \epsilon_p u))}{2\epsilon_p},
            \quad \gamma_i \leftarrow \mathrm{clip}\big(\gamma_i - \eta_p n_i \hat g u_i,\ (1-\tau) n_i,\ (1+\tau) n_i\big) \\
        &\theta_i \leftarrow \theta_{0,i} + \tfrac{\gamma_i}{n_i} (\theta_i - \theta_{0,i})
        \end{aligned}

    where :math:`\theta(\gamma)` sets each :math:`\theta_i` to :math:`\theta_{0,i} + \frac{\gamma_i}{n_i}
    (\theta_i - \theta_{0,i})`. A round costs exactly :math:`2J` forward passes.

    Notes (choices of zotune, see docs/methods/dizo.md): a tensor that has not moved (:math:`n_i = 0`) keeps
    ratio 1; a probe whose losses are not finite leaves the ratios as they are; each probe is undone (back to
    ratio 1) before the next, by rescaling the displacement in fp32, which restores θ to float32 rounding.

    Args:
        config: a :class:`DiZOConfig`.

    Raises:
        ConfigError: ``projected_patterns`` match no trainable tensor.
    """

    def __init__(self, config: DiZOConfig) -> None:
        super().__init__(config)
        self.projected: list[Block] = []
        self.anchor: dict[str, torch.Tensor] = {}
        self.ratios: torch.Tensor = torch.ones(0)  # the ratio each projected tensor currently has, vs. round start
        self._rounds: list[dict[str, Any]] = []
        self._warned_same_batch = False

    def setup(self, engine: PerturbationEngine) -> None:
        super().setup(engine)
        patterns = [re.compile(p) for p in self.config.projected_patterns]
        self.projected = [b for b in engine.blocks if any(p.search(b.name) for p in patterns)]
        if not self.projected:
            examples = ", ".join(repr(b.name) for b in engine.blocks[:3])
            raise ConfigError(
                f"DiZO's projected_patterns {list(self.config.projected_patterns)} match none of the "
                f"{len(engine.blocks)} trainable tensors (e.g. {examples}); set the option projected_patterns"
            )
        # The anchor holds the projected tensors only, taken when the optimizer is built (the pretrained weights).
        self.anchor = {b.name: b.param.detach().clone() for b in self.projected}
        self.ratios = torch.ones(len(self.projected), dtype=torch.float32)

    def after_update(self, step: int, loss_fn: LossFn, generator: torch.Generator, fresh_loss: FreshLossFn) -> None:
        if (step + 1) % self.config.interval == 0:
            self.project(step, loss_fn, generator, fresh_loss)

    @torch.no_grad()
    def divergence_norms(self) -> torch.Tensor:
        """``||theta_i - theta0_i||_F`` of every projected tensor, in fp32."""
        return torch.stack([(b.param.float() - self.anchor[b.name].float()).norm() for b in self.projected])

    @torch.no_grad()
    def set_ratios(self, targets: torch.Tensor) -> None:
        """Rescale each projected tensor's displacement to ``targets[i]`` times its round-start value.

        theta_i <- theta0_i + (target_i / current_i)(theta_i - theta0_i), in fp32 and rounded once.
        """
        for i, block in enumerate(self.projected):
            target, current = float(targets[i]), float(self.ratios[i])
            if target == current:
                continue
            anchor = self.anchor[block.name].float()
            moved = block.param.float().sub_(anchor).mul_(target / current).add_(anchor)
            block.param.copy_(moved)
        self.ratios = targets.to(torch.float32).clone()

    @torch.no_grad()
    def project(self, step: int, loss_fn: LossFn, generator: torch.Generator, fresh_loss: FreshLossFn) -> None:
        """One projection round (2J forward passes); the weights end projected by the learned ratios."""
        cfg = self.config
        if fresh_loss is None:
            if not self._warned_same_batch:
                warnings.warn("DiZO probes the projection on the step's own batch: pass fresh_closure to "
                              "ZOOptimizer.step to probe on fresh batches (the paper's protocol)",
                              ZotuneWarning, stacklevel=4)
                self._warned_same_batch = True
            fresh_loss = lambda j: loss_fn  # noqa: E731
        norms = self.divergence_norms().double()
        moved = norms > 0
        gamma = norms.clone()
        skipped = 0
        for j in range(cfg.probes):
            u = torch.randn(len(self.projected), generator=generator, dtype=torch.float64)
            limit = cfg.ratio_range / cfg.probe_eps * norms
            u = torch.maximum(torch.minimum(u, limit), -limit)
            probe_loss = fresh_loss(j)
            try:
                self.set_ratios(self._ratio(gamma + cfg.probe_eps * u, norms))
                loss_plus = probe_loss()
                self.set_ratios(self._ratio(gamma - cfg.probe_eps * u, norms))
                loss_minus = probe_loss()
            finally:  # also when the closure fails: the round leaves the weights unprojected
                self.set_ratios(torch.ones(len(self.projected)))  # undo the probe
            grad = (loss_plus - loss_minus) / (2 * cfg.probe_eps)
            if not math.isfinite(grad):
                skipped += 1
                continue
            gamma = gamma - cfg.probe_lr * norms * grad * u
            gamma = torch.minimum(torch.maximum(gamma, (1 - cfg.ratio_range) * norms), (1 + cfg.ratio_range) * norms)
        final = self._ratio(gamma, norms)
        self.set_ratios(final)
        self.ratios = torch.ones(len(self.projected))  # the projected weights are the next round's start
        kept = final[moved] if bool(moved.any()) else final
        self._rounds.append({
            "event": "projection",
            "after_step": step + 1,
            "ratio_mean": float(kept.mean()),
            "ratio_min": float(kept.min()),
            "ratio_max": float(kept.max()),
            "skipped_probes": skipped,
            "divergence_norms": {b.name: round(float(n), 6) for b, n in zip(self.projected, norms)},
        })

    @staticmethod
    def _ratio(gamma: torch.Tensor, norms: torch.Tensor) -> torch.Tensor:
        # A tensor that has not moved has nothing to rescale: it keeps ratio 1.
        return torch.where(norms > 0, gamma / norms.clamp_min(1e-30), torch.ones_like(norms))

    def report(self) -> list[dict[str, Any]]:
        rounds, self._rounds = self._rounds, []
        return rounds

    def state_dict(self) -> dict[str, Any]:
        return {"anchor": {name: t.clone() for name, t in self.anchor.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        anchor = state["anchor"]
        mismatch = sorted(set(anchor) ^ set(self.anchor))
        if mismatch:
            raise StateError(f"DiZO anchor does not match the projected tensors: {mismatch[:4]}")
        for name, tensor in anchor.items():
            if tensor.shape != self.anchor[name].shape:
                raise StateError(f"DiZO anchor {name!r} has shape {tuple(tensor.shape)}, "
                                 f"the model has {tuple(self.anchor[name].shape)}")
            self.anchor[name] = tensor.to(self.anchor[name].dtype).clone()
