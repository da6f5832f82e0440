"""Samplers: which blocks take part in a step, and with what update weight.

A sampler is a plug-in separate from the method, so that one sampler (AdaLeZO's layer bandit) composes with every
method and every update rule: the optimizer asks the sampler for a plan, lets the method refine it (per-block
scales), probes, lets the sampler reweight the plan from the projected gradients, updates, and shows the sampler
the probes. The default sampler, ``full``, is MeZO's: every block, scale 1, weight 1.

Hooks never log, print, save or seed the global RNG, and never evaluate the loss.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from zotune.errors import ConfigError
from zotune.perturb import PerturbationEngine, StepPlan
from zotune.registry import Registry

__all__ = [
    "SamplerConfig",
    "Sampler",
    "FullSampler",
    "SAMPLERS",
    "register_sampler",
    "build_sampler",
    "route_options",
]


@dataclass
class SamplerConfig:
    """Base of every sampler's config. Subclasses add typed fields with defaults and ``help`` metadata."""

    sampler: ClassVar[str] = ""

    def to_dict(self) -> dict[str, Any]:
        return {"sampler": self.sampler, **dataclasses.asdict(self)}


class Sampler:
    """Hook object; the defaults are MeZO's (every block, scale 1, weight 1, nothing learned).

    Args:
        config: the sampler's config.
    """

    def __init__(self, config: SamplerConfig) -> None:
        self.config = config
        self.engine: PerturbationEngine | None = None

    def setup(self, engine: PerturbationEngine) -> None:
        """Called once by the optimizer, with the engine whose blocks the sampler will plan over."""
        self.engine = engine

    def plan(self, step: int, generator: torch.Generator) -> StepPlan:
        """The blocks of step ``step``, drawn with ``generator`` (seeded from the step seed)."""
        return StepPlan.full(len(self.engine))

    def reweight(self, probes: list, plan: StepPlan) -> StepPlan:
        """Called after probing, before the update: the plan whose weights the update uses. Must keep the
        blocks and scales of ``plan`` (the pending restore depends on them)."""
        return plan

    def observe(self, probes: list, plan: StepPlan) -> None:
        """Called after the update with the step's probes."""
        return None

    def metrics(self) -> dict[str, float]:
        """Per-step scalars for the training log."""
        return {}

    def report(self) -> dict[str, Any]:
        """Statistics accumulated since the last call (the training loop calls it once per evaluation interval),
        then reset. Empty for samplers with nothing to report."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        return None


@dataclass
class FullSamplerConfig(SamplerConfig):
    """Every block in every step (MeZO)."""


class FullSampler(Sampler):
    """MeZO's plan: every block, scale 1, weight 1. Overrides nothing."""


@dataclass(frozen=True)
class SamplerSpec:
    config_cls: type[SamplerConfig]
    sampler_cls: type[Sampler]


SAMPLERS: Registry[SamplerSpec] = Registry("sampler")


def register_sampler(name: str, *, config_cls: type[SamplerConfig], sampler_cls: type[Sampler]) -> None:
    config_cls.sampler = name
    SAMPLERS.register(name, SamplerSpec(config_cls, sampler_cls))


register_sampler("full", config_cls=FullSamplerConfig, sampler_cls=FullSampler)


def build_sampler(sampler: str | SamplerConfig, options: dict[str, Any] | None = None) -> Sampler:
    """Instantiate a registered sampler from its name and options, or from a config object.

    Raises:
        UnknownNameError: the name is not registered.
        ConfigError: an option is invalid, or options were given together with a config object.
    """
    if isinstance(sampler, SamplerConfig):
        if options:
            raise ConfigError(f"Sampler options {sorted(options)} given together with a "
                              f"{type(sampler).__name__}; set them on the config instead")
        return SAMPLERS.get(sampler.sampler).sampler_cls(sampler)
    spec = SAMPLERS.get(sampler)
    return spec.sampler_cls(spec.config_cls(**(options or {})))


def route_options(
    options: dict[str, Any], owners: list[tuple[str, type | None]]
) -> list[dict[str, Any]]:
    """Split one mapping of options among config dataclasses by field name.

    Users give the options of a method and of its sampler together (``--option sample_fraction=0.3``); each
    goes to the config that declares it.

    Args:
        options: the options.
        owners: ``(label, config class or None)`` pairs, e.g. ``("method 'mezo'", MeZOConfig)``; None stands for
            a config given as an object, which takes no options.

    Returns:
        One mapping per owner, in order.

    Raises:
        ConfigError: an option that no config declares, naming the allowed ones.
    """
    fields = [{f.name for f in dataclasses.fields(cls)} if cls else set() for _, cls in owners]
    routed: list[dict[str, Any]] = [{} for _ in owners]
    unknown = []
    for key, value in options.items():
        owner = next((i for i, names in enumerate(fields) if key in names), None)
        if owner is None:
            unknown.append(key)
        else:
            routed[owner][key] = value
    if unknown:
        allowed = ", ".join(sorted(set().union(*fields))) or "none"
        labels = " with ".join(label for label, _ in owners)
        raise ConfigError(f"Unknown option(s) {sorted(unknown)} for {labels} (allowed: {allowed})")
    return routed
