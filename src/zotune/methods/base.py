"""The method plug-in interface: a config dataclass plus a hook object whose defaults are MeZO.

A method overrides only the hooks where it differs from MeZO (as ``torch.optim`` algorithms share one
functional core and differ in their update):

- ``plan(step, generator, sampled)``: refine the sampler's plan (which blocks take part, with a perturbation
  scale and update weight per block; the sampler, ``methods/sampling.py``, chooses the blocks);
- ``direction(block, generator, out)``: how z is drawn, a whole block at a time, or ``noise_source()``: the same
  as a stream the engine reads in chunks on its worker threads;
- ``see_model(model)``: the module the optimizer was built on, before ``setup`` (ZO Fine-tuner: whether its
  embedding is also the output layer);
- ``directions_per_step(n_directions)``: how many directions a step probes (``n_directions``, unless the
  method sets its own count, as FZOO does);
- ``probe(loss_fn, seed, eps, plan)``: how the losses are evaluated (two-point by default);
- ``finish(probes)``: the step's probes once all are in, before the update (FZOO normalises them);
- ``observe(probes, plan)``: what is learned from the losses;
- ``after_update(step, loss_fn, generator, fresh_loss)``: work between steps that may evaluate the loss, on the
  step's batch (``loss_fn``) or on fresh ones (``fresh_loss(j)``, when the caller provides them).

Hooks never log, print, save or seed the global RNG; only ``probe`` and ``after_update`` evaluate the loss.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from zotune.errors import ConfigError, StateError
from zotune.methods.plugins import Plugin, PluginConfig, PluginRegistry, PluginSpec
from zotune.perturb import NoiseSource, StepPlan

__all__ = [
    "MethodConfig", "Method", "OneSidedMethod", "LazySubspace", "Probe", "MethodSpec", "METHODS", "LossFn",
    "FreshLossFn", "register_method", "build_method", "check_option_types",
]

LossFn = Callable[[], float]
# fresh_loss(j) is the loss on the j-th fresh batch of this step (None: the caller gave no fresh batches).
FreshLossFn = Callable[[int], LossFn] | None


# What a config field annotated with these types accepts (a YAML or CLI value may be anything).
_ACCEPTED_TYPES = {"float": (int, float), "int": (int,), "bool": (bool,), "str": (str,)}


def check_option_types(config: Any) -> None:
    """Check every option against its field's type, converting numeric strings for ``float`` and ``int`` fields
    (YAML reads ``2e-3`` and ``inf`` as strings); raise one ``ConfigError`` naming every bad option.

    Method and sampler configs call this first in ``__post_init__``, so that their range checks compare numbers
    and a value such as ``sigma="abc"`` is a clear error rather than a ``TypeError``. Fields of other types are
    left to the config.
    """
    problems = []
    for f in dataclasses.fields(config):
        kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", "")
        accepted = _ACCEPTED_TYPES.get(kind)
        value = getattr(config, f.name)
        if kind in ("float", "int") and isinstance(value, str):
            try:
                value = float(value) if kind == "float" else int(value)
                setattr(config, f.name, value)
            except ValueError:
                pass
        if accepted and (not isinstance(value, accepted) or (kind != "bool" and isinstance(value, bool))):
            problems.append(f"Invalid {f.name}: {value!r} (must be of type {kind})")
    if problems:
        raise ConfigError("; ".join(problems))


@dataclass
class MethodConfig(PluginConfig):
    """Base of every method's config. Subclasses add typed fields with defaults and ``help`` metadata."""

    kind: ClassVar[str] = "method"


@dataclass
class Probe:
    """The outcome of evaluating one direction.

    Attributes:
        seed: the direction's seed.
        projected_grad: ``g = (L+ - L-) / (2 eps)``.
        losses: the losses evaluated, ``(L+, L-)`` for the two-point probe.
        restore: ``(seed, coef)`` that still has to be added (times each block's scale) to bring the weights back
            to theta, or None if they are back already. Leaving it pending lets ``sgd`` fuse it into the update.
        at_theta: the loss at theta itself, when the method evaluated it (FZOO's l_0); None: estimated from
            ``losses``.
    """

    seed: int
    projected_grad: float
    losses: tuple[float, ...]
    restore: tuple[int, float] | None = None
    at_theta: float | None = None

    @property
    def loss(self) -> float:
        """The loss estimate at theta reported for the step: the loss at theta when it was evaluated, else the
        mean of the probe's losses."""
        return self.at_theta if self.at_theta is not None else sum(self.losses) / len(self.losses)


class Method(Plugin):
    """Hook object; every default is the MeZO behaviour, so ``MeZO`` overrides nothing.

    Args:
        config: the method's config.
    """

    config: MethodConfig

    def plan(self, step: int, generator: torch.Generator, sampled: StepPlan) -> StepPlan:
        """The step's plan, given the one the sampler drew (MeZO keeps it as it is)."""
        return sampled

    def see_model(self, model: torch.nn.Module | None) -> None:
        """Called before ``setup`` with the module the optimizer was built on, or None when it was given tensors:
        a method whose rule depends on how the model uses a weight reads it here (MeZO: nothing)."""
        return None

    def noise_source(self) -> NoiseSource | None:
        """The method's own distribution of z as a stream (``perturb/noise.py``), read chunk by chunk and on the
        engine's worker threads. None (MeZO's): the optimizer's ``noise``."""
        return None

    def check_settings(self, lr: float, eps: float) -> None:
        """Called once with the optimizer's lr and eps: a method whose parts were tuned for other values warns here
        (MeZO: nothing to check)."""
        return None

    def update_rule(self, rule: Any) -> Any:
        """The update rule this method's steps use, given the optimizer's (``optim/updates.py``; MeZO: that one).
        A method whose estimate has its own update (LOZO-M's momentum kept in low-rank factors) returns an object
        with the rule's ``update(ctx)``, and refuses a rule it cannot replace (``ConfigError``)."""
        return rule

    def directions_per_step(self, n_directions: int) -> int:
        """The directions a step probes, given the optimizer's ``n_directions`` (MeZO: that many). A method with
        its own count returns it, and refuses an ``n_directions`` it cannot honour (``ConfigError``)."""
        return n_directions

    def probe(self, loss_fn: LossFn, seed: int, eps: float, plan: StepPlan) -> Probe:
        """Two-point SPSA: theta + eps z, theta - eps z; leaves the ``+eps z`` restore pending."""
        self.engine.perturb(seed, eps, plan)
        loss_plus = loss_fn()
        self.engine.perturb(seed, -2.0 * eps, plan)
        loss_minus = loss_fn()
        grad = (loss_plus - loss_minus) / (2.0 * eps)
        return Probe(seed, grad, (loss_plus, loss_minus), restore=(seed, eps))

    def finish(self, probes: list[Probe]) -> list[Probe]:
        """The step's probes, all finite, before the update: a method may rescale their projected gradients
        (MeZO keeps them)."""
        return probes

    def observe(self, probes: list[Probe], plan: StepPlan) -> None:
        return None

    def after_update(
        self, step: int, loss_fn: LossFn, generator: torch.Generator, fresh_loss: FreshLossFn
    ) -> None:
        """Called after the update of step ``step``; ``generator`` is seeded from the step seed."""
        return None


class OneSidedMethod(Method):
    """N one-sided probes around one unperturbed loss, N the config's ``perturbations`` (FZOO's and ZO-Muon's
    estimate): l_0 = L(theta) once, on the step's first probe, then l_i = L(theta + eps z_i) and
    g_i = (l_i - l_0) / eps, N + 1 forward passes a step. Each probe leaves its restore ``-eps z_i`` pending, so an
    update rule can fold the last one into the update."""

    def setup(self, engine) -> None:
        super().setup(engine)
        self._at_theta: float | None = None  # l_0 of the step under way

    def directions_per_step(self, n_directions: int) -> int:
        if n_directions != 1:
            raise ConfigError(f"{self.config.name} takes its direction count from its perturbations option "
                              f"({self.config.perturbations}), not n_directions={n_directions}")
        return self.config.perturbations

    def plan(self, step: int, generator: torch.Generator, sampled: StepPlan) -> StepPlan:
        self._at_theta = None  # a new step: its l_0 is evaluated by the first probe
        return sampled

    def probe(self, loss_fn: LossFn, seed: int, eps: float, plan: StepPlan) -> Probe:
        if self._at_theta is None:
            self._at_theta = loss_fn()
        self.engine.perturb(seed, eps, plan)
        loss = loss_fn()
        return Probe(seed, (loss - self._at_theta) / eps, (loss,), restore=(seed, -eps), at_theta=self._at_theta)


class LazySubspace:
    """A seed drawn from the step's own stream every ``config.interval`` steps, from which a method regenerates the
    subspace its directions live in for that period (LOZO's V, ZO-Muon's P); kept in the method's state, so that a
    resumed run keeps the same subspace. Mixed into a ``Method``, whose ``plan`` calls ``new_period`` first."""

    period_seed = 0  # set by the first step's plan

    def new_period(self, step: int, generator: torch.Generator) -> None:
        if step % self.config.interval == 0:
            self.period_seed = int(torch.randint(0, 2**63 - 1, (1,), generator=generator))

    def state_dict(self) -> dict[str, Any]:
        return {"period_seed": self.period_seed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        seed = state.get("period_seed")
        if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**63:
            raise StateError(f"Corrupt {self.config.name} state: period_seed is {seed!r}")
        self.period_seed = seed


@dataclass(frozen=True)
class MethodSpec(PluginSpec):
    """A registered method: its config and hook classes, the sampler it runs with unless told otherwise
    (a *recipe* such as ``adalezo`` is MeZO's hooks with another sampler), and the learning rate ``zotune train``
    gives it for full fine-tuning when none is given (None: the training mode's default)."""

    sampler: str = "full"
    lr: float | None = None


METHODS: PluginRegistry[MethodSpec] = PluginRegistry("method")


def register_method(
    name: str, *, config_cls: type[MethodConfig], method_cls: type[Method], sampler: str = "full",
    lr: float | None = None,
) -> None:
    """Register a method under ``name`` (called at the end of each method's ``__init__.py``).

    Args:
        lr: the full fine-tuning learning rate ``zotune train`` uses when none is given (the built-in methods'
            come from the sweep of docs/results.md); None: the training mode's default.
    """
    METHODS.register(name, MethodSpec(config_cls, method_cls, sampler, lr))


def build_method(method: str | MethodConfig, options: dict[str, Any] | None = None) -> Method:
    """Instantiate a registered method from its name and options, or from a config object
    (``PluginRegistry.build``: unknown options and options beside a config object are refused)."""
    return METHODS.build(method, options)
