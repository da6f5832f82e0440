"""The update rules of ZO-Bench (arXiv 2402.11592) that consume a ZO gradient estimate (MeZO's, arXiv 2305.17333).

A rule receives, per step, the direction seeds with their scalar coefficients ``g_i / n`` and turns them into a
parameter update, block by block, regenerating each z from its seed. ``sgd`` never materialises the gradient
estimate: it adds ``-lr * g_i / n * z_i`` straight into the weights, and folds a pending restore ``+eps * z`` into
the same pass (fused restore-and-update). The other rules build the block's estimate in a block-sized temporary.

Memory: ``sgd``, ``sign`` and ``cons`` keep no state. ``momentum`` keeps one fp32 buffer the size of the trainable
parameters, ``adam`` two: they give up MeZO's inference-level memory, and their docs say so.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from zotune.errors import ConfigError
from zotune.perturb import Block, PerturbationEngine, StepPlan
from zotune.registry import Registry
from zotune.settings import is_finite, is_real

__all__ = [
    "UpdateContext",
    "UpdateRule",
    "ZOSGD",
    "ZOMomentum",
    "ZOSign",
    "ZOConservative",
    "ZOAdam",
    "UPDATES",
    "build_update_rule",
    "rule_settings",
]


@dataclass
class UpdateContext:
    """Everything a rule needs for one step.

    Attributes:
        engine: the perturbation engine (blocks and noise).
        plan: the blocks that take part, with their perturbation scales and update weights.
        directions: ``(seed, coef)`` with ``coef = g_i / n``, the projected gradient averaged over n directions.
        restore: ``(seed, coef)`` still to be added (per block, times its scale) to bring the weights back to
            theta, or None when the probe already restored them.
        lr: learning rate.
        weight_decay: L2 coefficient, applied to blocks with ``decay=True`` only.
        state: the optimizer's per-parameter state (``optimizer.state``).
        loss_fn: the step's loss function (forward passes are counted by the optimizer); only ``cons`` uses it.
    """

    engine: PerturbationEngine
    plan: StepPlan
    directions: list[tuple[int, float]]
    restore: tuple[int, float] | None
    lr: float
    weight_decay: float
    state: dict[torch.Tensor, dict[str, Any]]
    loss_fn: Callable[[], float]

    def block_terms(self, scale: float, weight: float, factor: float) -> list[tuple[int, float]]:
        """``(seed, factor * weight * scale * g_i / n)`` for each direction of one block."""
        return [(seed, factor * weight * scale * coef) for seed, coef in self.directions]

    def block_restore(self, scale: float) -> tuple[int, float] | None:
        return None if self.restore is None else (self.restore[0], self.restore[1] * scale)


class UpdateRule:
    """Base class: a rule validates its hyperparameters in ``__init__`` and implements ``update``."""

    name: ClassVar[str] = ""
    uses_weight_decay: ClassVar[bool] = True

    def update(self, ctx: UpdateContext) -> None:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class ZOSGD(UpdateRule):
    r"""ZO-SGD, the MeZO update: :math:`\theta \leftarrow (1-\eta\lambda)\theta - \eta\, \hat g`, with
    :math:`\hat g = \frac1n\sum_i g_i z_i`. A pending restore is fused into the same pass:
    :math:`\theta \leftarrow \theta + (\epsilon - \eta g) z` when n = 1."""

    name = "sgd"

    def update(self, ctx: UpdateContext) -> None:
        jobs = []
        for b, scale, weight in ctx.plan:
            block = ctx.engine.blocks[b]
            decay = 1.0 - ctx.lr * ctx.weight_decay if block.decay else 1.0
            terms = ctx.block_terms(scale, weight, -ctx.lr)
            restore = ctx.block_restore(scale)
            if restore is not None:
                # theta_new = decay * (theta_now + r z) - lr g z: the restore is scaled by the decay too.
                terms = [(restore[0], decay * restore[1])] + terms
            jobs.append((block, _merge_seeds(terms), decay))
        ctx.engine.apply_combinations(jobs)


def _merge_seeds(terms: list[tuple[int, float]]) -> list[tuple[int, float]]:
    """Sum the coefficients of equal seeds so each z is generated once (restore and update share z)."""
    merged: dict[int, float] = {}
    for seed, coef in terms:
        merged[seed] = merged.get(seed, 0.0) + coef
    return list(merged.items())


class _ElementwiseRule(UpdateRule):
    """Rules that need the block's estimate as a tensor: build it (restoring on the way), then ``apply``."""

    def update(self, ctx: UpdateContext) -> None:
        for b, scale, weight in ctx.plan:
            block = ctx.engine.blocks[b]
            grad = ctx.engine.combination(
                block, ctx.block_terms(scale, weight, 1.0), restore=ctx.block_restore(scale)
            )
            param = block.param
            master = param if param.dtype == torch.float32 else param.float()
            if ctx.weight_decay and block.decay:
                grad.add_(master, alpha=ctx.weight_decay)
            self.apply(master, grad, ctx.state[param], ctx.lr, block)
            if master is not param:
                param.copy_(master)

    def apply(
        self, param: torch.Tensor, grad: torch.Tensor, state: dict, lr: float, block: Block
    ) -> None:
        raise NotImplementedError


class ZOMomentum(_ElementwiseRule):
    r"""ZO-SGD with heavy-ball momentum: :math:`m \leftarrow \beta m + \hat g,\ \theta \leftarrow \theta - \eta m`.
    Keeps one fp32 buffer as large as the trainable parameters."""

    name = "momentum"

    def __init__(self, *, momentum: float = 0.9) -> None:
        if not (is_real(momentum) and 0.0 <= momentum < 1.0):
            raise ConfigError(f"Invalid momentum: {momentum!r} (must be a number in [0, 1))")
        self.momentum = momentum

    def apply(self, param, grad, state, lr, block) -> None:
        buf = state.get("momentum_buffer")
        if buf is None:
            buf = state["momentum_buffer"] = torch.zeros_like(grad)
        buf.mul_(self.momentum).add_(grad)
        param.add_(buf, alpha=-lr)

    def __repr__(self) -> str:
        return f"ZOMomentum(momentum={self.momentum})"


class ZOSign(_ElementwiseRule):
    r"""ZO-SGD-Sign: :math:`\theta \leftarrow \theta - \eta\,\mathrm{sign}(\hat g)`. No state."""

    name = "sign"

    def apply(self, param, grad, state, lr, block) -> None:
        param.add_(grad.sign_(), alpha=-lr)


class ZOAdam(_ElementwiseRule):
    r"""ZO-Adam: Adam's moments over the ZO estimate, with bias correction. Keeps two fp32 buffers as large as
    the trainable parameters (3x MeZO's memory for the weights)."""

    name = "adam"

    def __init__(self, *, betas: tuple[float, float] = (0.9, 0.999), adam_eps: float = 1e-8) -> None:
        if not (isinstance(betas, (tuple, list)) and len(betas) == 2
                and all(is_real(b) and 0.0 <= b < 1.0 for b in betas)):
            raise ConfigError(f"Invalid betas: {betas!r} (must be two numbers in [0, 1))")
        if not (is_finite(adam_eps) and adam_eps > 0.0):
            raise ConfigError(f"Invalid adam_eps: {adam_eps!r} (must be a finite number > 0)")
        betas = tuple(betas)
        self.betas = betas
        self.adam_eps = adam_eps

    def apply(self, param, grad, state, lr, block) -> None:
        beta1, beta2 = self.betas
        if "exp_avg" not in state:
            state["step"] = torch.tensor(0.0)
            state["exp_avg"] = torch.zeros_like(grad)
            state["exp_avg_sq"] = torch.zeros_like(grad)
        state["step"] += 1
        step = float(state["step"])
        state["exp_avg"].lerp_(grad, 1 - beta1)
        state["exp_avg_sq"].mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        denom = (state["exp_avg_sq"] / (1 - beta2**step)).sqrt_().add_(self.adam_eps)
        param.addcdiv_(state["exp_avg"], denom, value=-lr / (1 - beta1**step))

    def __repr__(self) -> str:
        return f"ZOAdam(betas={self.betas}, adam_eps={self.adam_eps})"


class ZOConservative(UpdateRule):
    r"""ZO-SGD-Cons: take the SGD step only if it does not raise the batch loss, else try the opposite step, else
    stay. Costs up to three extra forward passes per step (L(theta), L(theta - eta g), L(theta + eta g))."""

    name = "cons"
    uses_weight_decay = False

    def update(self, ctx: UpdateContext) -> None:
        engine = ctx.engine
        if ctx.restore is not None:
            engine.perturb(ctx.restore[0], ctx.restore[1], ctx.plan)

        def move(sign: float) -> None:
            for b, scale, weight in ctx.plan:
                terms = ctx.block_terms(scale, weight, -sign * ctx.lr)
                engine.add_combination(engine.blocks[b], terms)

        moved = 0.0
        try:
            loss_here = ctx.loss_fn()
            move(1.0)
            moved = 1.0
            if ctx.loss_fn() <= loss_here:
                return
            move(-2.0)
            moved = -1.0
            if ctx.loss_fn() < loss_here:
                return
        except BaseException:
            if moved:
                move(-moved)  # a failed evaluation leaves the weights at theta, as a rejected step would
            raise
        move(1.0)


UPDATES: Registry[type[UpdateRule]] = Registry("update rule")
for _rule in (ZOSGD, ZOMomentum, ZOSign, ZOConservative, ZOAdam):
    UPDATES.register(_rule.name, _rule)


def rule_settings(name: str) -> set[str]:
    """The hyperparameters rule ``name`` takes (``momentum`` for ``momentum``, ``betas`` and ``adam_eps`` for
    ``adam``, none for the others)."""
    return set(inspect.signature(UPDATES.get(name).__init__).parameters) - {"self"}


def build_update_rule(name: str, *, strict: bool = False, **hyper: Any) -> UpdateRule:
    """Instantiate rule ``name`` with the hyperparameters it takes. ``ZOOptimizer`` hands every rule all of its
    settings (with their defaults) and each takes its own; with ``strict``, a setting given (not None) to a rule
    that does not take it is refused instead, as the command line does (``--momentum`` with ``--update sgd``).

    Raises:
        UnknownNameError: ``name`` is not a registered rule.
        ConfigError: a hyperparameter is out of range, or (strict) not one of the rule's.
    """
    cls, takes = UPDATES.get(name), rule_settings(name)
    given = {k: v for k, v in hyper.items() if v is not None}
    foreign = sorted(set(given) - takes)
    if strict and foreign:
        users = [rule for rule in UPDATES.names() if set(foreign) & rule_settings(rule)]
        raise ConfigError(f"{', '.join(foreign)} {'does' if len(foreign) == 1 else 'do'} not apply to update "
                          f"{name!r} (only to: {', '.join(users)})")
    return cls(**{k: v for k, v in given.items() if k in takes})
