"""The plug-in scaffold shared by methods and samplers: a config dataclass per plug-in, a registry of
(config class, implementation class) specs, and one ``build`` that checks options the same way for both.

A plug-in is registered once, at the end of its package's ``__init__.py``; ``build`` turns a name and a mapping
of options (from the CLI, YAML or Python) or a ready config object into the implementation.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

from zotune.errors import ConfigError
from zotune.perturb import PerturbationEngine
from zotune.registry import Registry

__all__ = ["PluginConfig", "Plugin", "PluginSpec", "PluginRegistry"]


@dataclass
class PluginConfig:
    """Base of every plug-in config. Subclasses add typed fields with defaults and ``help`` metadata.

    ``kind`` (``method``, ``sampler``) is set by each family's base class, ``name`` at registration.
    """

    kind: ClassVar[str] = ""
    name: ClassVar[str] = ""

    def to_dict(self) -> dict[str, Any]:
        return {self.kind: self.name, **dataclasses.asdict(self)}


class Plugin:
    """Base of the hook objects built from a config (``Method``, ``Sampler``): the hooks every plug-in has,
    with defaults that do nothing.

    Args:
        config: the plug-in's config.
    """

    def __init__(self, config: PluginConfig) -> None:
        self.config = config
        self.engine: PerturbationEngine | None = None

    def setup(self, engine: PerturbationEngine) -> None:
        """Called once by the optimizer, with the engine whose blocks the plug-in will work over."""
        self.engine = engine

    def metrics(self) -> dict[str, float]:
        """Per-step scalars the training loop logs with each step (empty: nothing to log)."""
        return {}

    def report(self) -> list[dict[str, Any]]:
        """Records since the last call (DiZO's projection rounds, AdaLeZO's layer draws), each logged as one
        record; then reset. The training loop asks methods after every step, samplers once per evaluation
        interval."""
        return []

    def state_dict(self) -> dict[str, Any]:
        """What the plug-in has learned, for checkpoints (tensors and plain values)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        return None


@dataclass(frozen=True)
class PluginSpec:
    """A registered plug-in: its config class and the class built from a config."""

    config_cls: type[PluginConfig]
    impl_cls: type


S = TypeVar("S", bound=PluginSpec)


class PluginRegistry(Registry[S], Generic[S]):
    """A ``Registry`` of plug-in specs that can build them."""

    def register(self, name: str, obj: S) -> S:
        spec = super().register(name, obj)
        spec.config_cls.name = name
        return spec

    def options_of(self, name: str) -> set[str]:
        """The option names plug-in ``name`` takes (its config's fields)."""
        return {f.name for f in dataclasses.fields(self.get(name).config_cls)}

    def build(self, value: str | PluginConfig, options: dict[str, Any] | None = None) -> Any:
        """The plug-in from its name and options, or from a config object (which takes no further options).

        Raises:
            UnknownNameError: the name is not registered.
            ConfigError: an option the plug-in does not take (naming the ones it does), an invalid value, or
                options given together with a config object.
        """
        options = dict(options or {})
        if isinstance(value, PluginConfig):
            if options:
                raise ConfigError(f"{self.kind.capitalize()} options {sorted(options)} given together with a "
                                  f"{type(value).__name__}; set them on the config instead")
            return self.get(value.name).impl_cls(value)
        spec, known = self.get(value), self.options_of(value)
        unknown = sorted(set(options) - known)
        if unknown:
            raise ConfigError(f"Unknown option(s) {unknown} for {self.kind} {value!r} "
                              f"(allowed: {', '.join(sorted(known)) or 'none'})")
        return spec.impl_cls(spec.config_cls(**options))
