"""Meta-training the controllers along a first-order trajectory (ZO Fine-tuner, arXiv 2510.00419) for any model and loss closure.

Each meta step on batch B, at the trajectory's weights theta:

1. sigma = controllers(x) *with* gradient into the MLPs; c = sqrt(sum n_b / sum n_b sigma_b^2), detached;
2. a ZO probe with u_b = c sigma_b z_b: L+, L-, g = (L+ - L-) / 2 eps (no gradient);
3. the lookahead theta' = theta - alpha g c sigma_b z_b, and the meta-loss M = L(theta'; B);
4. dM/dsigma_b = c <dL/dtheta'_b, -alpha g z_b> (theta' is linear in sigma_b, so one backward pass at theta'
   and the regenerated z give the exact meta-gradient without a second copy of the weights); SGD on the MLPs;
5. the first-order step on theta: SGD with momentum, gradient-norm clipping, the learning rate decaying linearly
   to 0 within each reset cycle; every ``reset_every`` epochs the weights go back to the pretrained ones (and the
   momentum to 0), so the controllers see early-training states again.

A meta step costs two forward passes without gradient and two with (the lookahead and the first-order step).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from zotune.errors import ConfigError
from zotune.methods.base import Probe
from zotune.methods.zo_finetuner.config import EMBEDDING_PATTERN, embedding_rule_problem
from zotune.methods.zo_finetuner.controller import (
    ControllerBank,
    block_counts,
    block_features,
    energy_constant,
    output_tied,
)
from zotune.methods.zo_finetuner.method import ControllerState
from zotune.perturb import PerturbationEngine, StepPlan
from zotune.perturb.functional import mix_seed
from zotune.settings import is_finite, is_int

__all__ = ["MetaRecipe", "MetaTrainer"]

GradLossFn = Callable[[], torch.Tensor]  # the batch's loss at the current weights, differentiable when grad is on


@dataclass
class MetaRecipe:
    """The meta-training settings; the defaults are the paper's recipe for LLaMA-3.2-1B (on COPA)."""

    epochs: int = field(default=15, metadata={"help": "passes over the training examples"})
    reset_every: int = field(default=5, metadata={"help": "epochs between resets of the weights to the pretrained"})
    batch_size: int = field(default=8, metadata={"help": "examples per meta step"})
    eps: float = field(default=1e-3, metadata={"help": "ZO perturbation scale of the probe"})
    model_lr: float = field(default=1e-2, metadata={"help": "first-order SGD learning rate (decays to 0 per cycle)"})
    momentum: float = field(default=0.8, metadata={"help": "first-order SGD momentum"})
    clip_norm: float = field(default=1.0, metadata={"help": "first-order gradient-norm clip"})
    alpha: float = field(default=1e-6, metadata={"help": "lookahead step of the meta-loss"})
    meta_lr: float = field(default=0.1, metadata={"help": "SGD learning rate of the controllers"})
    embedding_rule: str = field(default="auto", metadata={"help": "auto, touched or full (the method's option)"})
    touched_rows: int = field(default=120, metadata={"help": "embedding rows counted: 15 x batch (120 = 15 x 8)"})
    embedding_pattern: str = EMBEDDING_PATTERN
    seed: int = field(default=0, metadata={"help": "seeds directions, batches and the controllers' initialisation"})

    def __post_init__(self) -> None:
        problems = [f"Invalid {name}: {getattr(self, name)!r} (must be an integer >= 1)"
                    for name in ("epochs", "reset_every", "batch_size", "touched_rows")
                    if not isinstance(getattr(self, name), int) or getattr(self, name) < 1]
        problems += [f"Invalid {name}: {getattr(self, name)!r} (must be a finite number > 0)"
                     for name in ("eps", "model_lr", "clip_norm", "alpha", "meta_lr")
                     if not is_finite(getattr(self, name)) or getattr(self, name) <= 0]
        if not is_int(self.seed) or not 0 <= self.seed < 2**63:
            problems.append(f"Invalid seed: {self.seed!r} (must be an integer from 0 to 2**63 - 1)")
        if not isinstance(self.momentum, (int, float)) or not 0 <= self.momentum < 1:
            problems.append(f"Invalid momentum: {self.momentum!r} (must be in [0, 1))")
        if rule_problem := embedding_rule_problem(self.embedding_rule):
            problems.append(rule_problem)
        if problems:
            raise ConfigError("; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class MetaTrainer:
    """Meta-trains a :class:`ControllerBank` on ``model`` (holding the pretrained weights when built).

    Args:
        model: the model; its trainable parameters are the blocks, in ``named_parameters`` order.
        bank: the controllers, one per trainable parameter (a fresh bank, or one to train further).
        recipe: the settings.
        steps_per_epoch: meta steps per pass over the training examples (sets the reset cycle and the decay).
    """

    def __init__(self, model: torch.nn.Module, bank: ControllerBank, recipe: MetaRecipe, *,
                 steps_per_epoch: int) -> None:
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        self.model, self.recipe = model, recipe
        self.engine = PerturbationEngine(named)
        self.bank = bank.fit(self.engine.blocks, "the controller being meta-trained")
        self.params = [p for _, p in named]
        self.counts = block_counts(self.engine.blocks, rule=recipe.embedding_rule, touched_rows=recipe.touched_rows,
                                   pattern=recipe.embedding_pattern, tied=output_tied(model))
        self.pretrained = [p.detach().clone() for p in self.params]
        self.model_optimizer = torch.optim.SGD(self.params, lr=recipe.model_lr, momentum=recipe.momentum)
        self.meta_optimizer = torch.optim.SGD(self.bank.parameters(), lr=recipe.meta_lr)
        self.state = ControllerState(len(self.engine))
        self.steps_per_epoch = steps_per_epoch
        self.cycle = recipe.reset_every * steps_per_epoch
        self.total_steps = recipe.epochs * steps_per_epoch
        self.step_count = 0

    @torch.no_grad()
    def reset(self) -> None:
        """Back to the pretrained weights, with no momentum and no controller history."""
        for param, start in zip(self.params, self.pretrained):
            param.copy_(start)
        self.model_optimizer.state.clear()
        self.state = ControllerState(len(self.engine))

    def step(self, loss_fn: GradLossFn) -> dict[str, float]:
        """One meta step and one first-order step on the batch ``loss_fn`` evaluates; returns their metrics."""
        t = self.step_count
        if t and t % self.cycle == 0:
            self.reset()
        eps, alpha = self.recipe.eps, self.recipe.alpha
        seed = mix_seed(self.recipe.seed, t)
        all_blocks = tuple(range(len(self.engine)))

        # 1. sigma with gradient; c detached.
        features = block_features(self.engine.blocks, self.state.losses, self.state.sigma)
        sigma = self.bank(features)
        c = energy_constant(sigma, self.counts)
        scales = c * sigma.detach().double()
        plan = StepPlan(all_blocks, tuple(float(s) for s in scales), (1.0,) * len(all_blocks))

        # 2. the ZO probe.
        with torch.no_grad():
            self.engine.perturb(seed, eps, plan)
            loss_plus = float(loss_fn())
            self.engine.perturb(seed, -2 * eps, plan)
            loss_minus = float(loss_fn())
            self.engine.perturb(seed, eps, plan)
        g = (loss_plus - loss_minus) / (2 * eps)

        # 3.-4. the lookahead and the meta-gradient.
        with torch.no_grad():
            self.engine.perturb(seed, -alpha * g, plan)
        self.model.zero_grad(set_to_none=True)
        meta_loss = loss_fn()
        meta_loss.backward()
        dm_dscale = torch.zeros(len(self.engine), dtype=torch.float64)
        with torch.no_grad():
            for block in self.engine.blocks:
                if block.param.grad is not None:
                    z = self.engine.noise(seed, block)
                    dm_dscale[block.index] = -alpha * g * float(torch.dot(block.param.grad.view(-1).float(),
                                                                         z.view(-1)))
            self.engine.perturb(seed, alpha * g, plan)
        self.meta_optimizer.zero_grad(set_to_none=True)
        finite = math.isfinite(g) and bool(torch.isfinite(dm_dscale).all()) and math.isfinite(float(meta_loss.detach()))
        if finite:
            sigma.backward((c * dm_dscale).to(sigma.dtype))
            self.meta_optimizer.step()
        self.state.remember([Probe(seed, g, (loss_plus, loss_minus))], sigma)

        # 5. the first-order step at theta.
        lr = self.recipe.model_lr * (1 - (t % self.cycle) / self.cycle)
        for group in self.model_optimizer.param_groups:
            group["lr"] = lr
        self.model_optimizer.zero_grad(set_to_none=True)
        loss = loss_fn()
        loss.backward()
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.params, self.recipe.clip_norm))
        if math.isfinite(grad_norm):
            self.model_optimizer.step()
        self.model_optimizer.zero_grad(set_to_none=True)
        self.step_count += 1
        return {"meta_loss": float(meta_loss.detach()), "loss": float(loss.detach()), "loss_plus": loss_plus, "loss_minus": loss_minus,
                "projected_grad": g, "lr": lr, "grad_norm": grad_norm, "scale_min": float(scales.min()),
                "scale_max": float(scales.max()), "meta_grad_norm": float((c * dm_dscale).norm()),
                "meta_skipped": float(not finite)}

    def state_dict(self) -> dict[str, Any]:
        """What a resumed meta-training needs besides the model's weights and the controllers (saved as their own
        files); tensors and plain values only, so it loads with ``weights_only=True``."""
        return {"step": self.step_count, "model_optimizer": self.model_optimizer.state_dict(),
                "meta_optimizer": self.meta_optimizer.state_dict(), "controller_state": self.state.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model_optimizer.load_state_dict(state["model_optimizer"])
        self.meta_optimizer.load_state_dict(state["meta_optimizer"])
        self.state.load_state_dict(state["controller_state"])
        self.step_count = int(state["step"])
