"""The update rules of ZO-Bench (arXiv 2402.11592) that consume a ZO gradient estimate (MeZO's, arXiv 2305.17333).

A rule receives, per step, the direction seeds with their scalar coefficients ``g_i / n`` and turns them into a
parameter update, block by block, regenerating each z from its seed. ``sgd`` never materialises the gradient
estimate: it adds ``-lr * g_i / n * z_i`` straight into the weights, and folds a pending restore ``+eps * z`` into
the same pass (fused restore-and-update). The other rules build the block's estimate in a block-sized temporary.

Memory: ``sgd``, ``sign`` and ``cons`` keep no state. ``momentum`` keeps one fp32 buffer the size of the trainable
parameters, ``adam`` two: they give up MeZO's inference-level memory, and their docs say so.

Each rule is a plug-in, as methods are: a config dataclass holding its settings (with their defaults and help,
written there once; ``ZOConfig`` takes them as its fields) and the rule built from it, registered in ``UPDATES``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from zotune.errors import ConfigError
from zotune.methods.plugins import PluginConfig, PluginRegistry, PluginSpec
from zotune.perturb import Block, PerturbationEngine, StepPlan
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
    "UpdateConfig",
    "MomentumConfig",
    "AdamConfig",
    "register_update_rule",
    "refuse_foreign_settings",
    "rule_setting_names",
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


@dataclass
class UpdateConfig(PluginConfig):
    """Base of the update rules' configs; a rule with settings declares them as fields with defaults and help."""

    kind: ClassVar[str] = "update"


@dataclass
class MomentumConfig(UpdateConfig):
    momentum: float = field(default=0.9, metadata={"help": "--update momentum: its coefficient"})

    def __post_init__(self) -> None:
        if not (is_real(self.momentum) and 0.0 <= self.momentum < 1.0):
            raise ConfigError(f"Invalid momentum: {self.momentum!r} (must be a number in [0, 1))")


@dataclass
class AdamConfig(UpdateConfig):
    betas: tuple[float, float] = field(default=(0.9, 0.999), metadata={
        "help": "--update adam: its two moment decays, e.g. 0.9,0.999"})
    adam_eps: float = field(default=1e-8, metadata={"help": "--update adam: its epsilon"})

    def __post_init__(self) -> None:
        if not (isinstance(self.betas, (tuple, list)) and len(self.betas) == 2
                and all(is_real(b) and 0.0 <= b < 1.0 for b in self.betas)):
            raise ConfigError(f"Invalid betas: {self.betas!r} (must be two numbers in [0, 1))")
        if not (is_finite(self.adam_eps) and self.adam_eps > 0.0):
            raise ConfigError(f"Invalid adam_eps: {self.adam_eps!r} (must be a finite number > 0)")
        self.betas = tuple(self.betas)


class UpdateRule:
    """Base class: a rule is built from its config and implements ``update``."""

    uses_weight_decay: ClassVar[bool] = True

    def __init__(self, config: UpdateConfig) -> None:
        self.config = config

    @property
    def name(self) -> str:
        return self.config.name

    def update(self, ctx: UpdateContext) -> None:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config})"


class ZOSGD(UpdateRule):
    r"""ZO-SGD, the MeZO update: :math:`\theta \leftarrow (1-\eta\lambda)\theta - \eta\, \hat g`, with
    :math:`\hat g = \frac1n\sum_i g_i z_i`. A pending restore is fused into the same pass:
    :math:`\theta \leftarrow \theta + (\epsilon - \eta g) z` when n = 1."""

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

    config: MomentumConfig

    def apply(self, param, grad, state, lr, block) -> None:
        buf = state.get("momentum_buffer")
        if buf is None:
            buf = state["momentum_buffer"] = torch.zeros_like(grad)
        buf.mul_(self.config.momentum).add_(grad)
        param.add_(buf, alpha=-lr)


class ZOSign(_ElementwiseRule):
    r"""ZO-SGD-Sign: :math:`\theta \leftarrow \theta - \eta\,\mathrm{sign}(\hat g)`. No state."""

    def apply(self, param, grad, state, lr, block) -> None:
        param.add_(grad.sign_(), alpha=-lr)


class ZOAdam(_ElementwiseRule):
    r"""ZO-Adam: Adam's moments over the ZO estimate, with bias correction. Keeps two fp32 buffers as large as
    the trainable parameters (3x MeZO's memory for the weights)."""

    config: AdamConfig

    def apply(self, param, grad, state, lr, block) -> None:
        beta1, beta2 = self.config.betas
        if "exp_avg" not in state:
            state["step"] = torch.tensor(0.0)
            state["exp_avg"] = torch.zeros_like(grad)
            state["exp_avg_sq"] = torch.zeros_like(grad)
        state["step"] += 1
        step = float(state["step"])
        state["exp_avg"].lerp_(grad, 1 - beta1)
        state["exp_avg_sq"].mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        denom = (state["exp_avg_sq"] / (1 - beta2**step)).sqrt_().add_(self.config.adam_eps)
        param.addcdiv_(state["exp_avg"], denom, value=-lr / (1 - beta1**step))


class ZOConservative(UpdateRule):
    r"""ZO-SGD-Cons: take the SGD step only if it does not raise the batch loss, else try the opposite step, else
    stay. Costs up to three extra forward passes per step (L(theta), L(theta - eta g), L(theta + eta g))."""

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


UPDATES: PluginRegistry[PluginSpec] = PluginRegistry("update rule")


def register_update_rule(name: str, *, config_cls: type[UpdateConfig], rule_cls: type[UpdateRule]) -> None:
    """Register a rule under ``name``: its config class (one per rule: the name is set on it) and the rule."""
    UPDATES.register(name, PluginSpec(config_cls, rule_cls))


def rule_setting_names() -> set[str]:
    """The names of every registered rule's settings (``momentum``; ``betas``, ``adam_eps``)."""
    return {option for name in UPDATES.names() for option in UPDATES.options_of(name)}


def refuse_foreign_settings(name: str, given: dict[str, Any]) -> None:
    """Refuse the settings in ``given`` that rule ``name`` does not take, naming the rules that do (the command
    line's ``--momentum`` with ``--update sgd``).

    Raises:
        UnknownNameError: ``name`` is not a registered rule.
        ConfigError: naming the foreign settings.
    """
    foreign = sorted(set(given) - UPDATES.options_of(name))
    if foreign:
        users = [rule for rule in UPDATES.names() if set(foreign) & UPDATES.options_of(rule)]
        raise ConfigError(f"{', '.join(foreign)} {'does' if len(foreign) == 1 else 'do'} not apply to update "
                          f"{name!r} (only to: {', '.join(users)})")


@dataclass
class SGDConfig(UpdateConfig):
    pass


@dataclass
class SignConfig(UpdateConfig):
    pass


@dataclass
class ConsConfig(UpdateConfig):
    pass


for _name, _config, _rule in (("sgd", SGDConfig, ZOSGD), ("momentum", MomentumConfig, ZOMomentum),
                              ("sign", SignConfig, ZOSign), ("cons", ConsConfig, ZOConservative),
                              ("adam", AdamConfig, ZOAdam)):
    register_update_rule(_name, config_cls=_config, rule_cls=_rule)
