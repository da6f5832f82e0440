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
from zotune.methods.plugins import Plugin, PluginConfig, PluginRegistry, PluginSpec
from zotune.perturb import StepPlan

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
class SamplerConfig(PluginConfig):
    """Base of every sampler's config. Subclasses add typed fields with defaults and ``help`` metadata."""

    kind: ClassVar[str] = "sampler"


class Sampler(Plugin):
    """Hook object; the defaults are MeZO's (every block, scale 1, weight 1, nothing learned).

    Args:
        config: the sampler's config.
    """

    config: SamplerConfig

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


@dataclass
class FullSamplerConfig(SamplerConfig):
    """Every block in every step (MeZO)."""


class FullSampler(Sampler):
    """MeZO's plan: every block, scale 1, weight 1. Overrides nothing."""


SAMPLERS: PluginRegistry[PluginSpec] = PluginRegistry("sampler")


def register_sampler(name: str, *, config_cls: type[SamplerConfig], sampler_cls: type[Sampler]) -> None:
    SAMPLERS.register(name, PluginSpec(config_cls, sampler_cls))


register_sampler("full", config_cls=FullSamplerConfig, sampler_cls=FullSampler)


def build_sampler(sampler: str | SamplerConfig, options: dict[str, Any] | None = None) -> Sampler:
    """Instantiate a registered sampler from its name and options, or from a config object
    (``PluginRegistry.build``: unknown options and options beside a config object are refused)."""
    return SAMPLERS.build(sampler, options)


def route_options(
    options: dict[str, Any], owners: list[tuple[str, type | None]]
) -> list[dict[str, Any]]:
    """Split one mapping of options among config dataclasses.

    Users give the options of a method and of its sampler together (``--option sample_fraction=0.3``). A key
    may name its owner (``sampler.sample_fraction``, ``method.interval``: the first word of the owner's label);
    a plain key goes to the one config that declares it, and one that two configs declare must name its owner.

    Args:
        options: the options.
        owners: ``(label, config class or None)`` pairs, e.g. ``("method 'mezo'", MeZOConfig)``; None stands for
            a config given as an object, which takes no options.

    Returns:
        One mapping per owner, in order.

    Raises:
        ConfigError: an option that no config declares (naming the allowed ones), or a plain key that two do.
    """
    fields = [{f.name for f in dataclasses.fields(cls)} if cls else set() for _, cls in owners]
    namespaces = [label.split()[0] for label, _ in owners]
    routed: list[dict[str, Any]] = [{} for _ in owners]
    unknown, ambiguous = [], []
    for key, value in options.items():
        namespace, _, name = key.rpartition(".")
        candidates = [i for i, names in enumerate(fields)
                      if name in names and namespace in ("", namespaces[i])]
        if len(candidates) == 1:
            routed[candidates[0]][name] = value
        elif candidates:
            ambiguous.append(f"{key} ({' or '.join(f'{namespaces[i]}.{name}' for i in candidates)})")
        else:
            unknown.append(key)
    labels = " with ".join(label for label, _ in owners)
    if unknown:
        allowed = ", ".join(sorted(set().union(*fields))) or "none"
        raise ConfigError(f"Unknown option(s) {sorted(unknown)} for {labels} (allowed: {allowed})")
    if ambiguous:
        raise ConfigError(f"Option(s) of more than one owner for {labels}: {', '.join(ambiguous)}; name the owner")
    return routed
