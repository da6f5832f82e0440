"""``ZOConfig``: every setting of ``ZOOptimizer``, with its default, help text and validation, in one place.

``ZOOptimizer`` takes one (or the same settings as keywords); ``TrainConfig`` and ``ZOTrainingArguments`` take
their optimizer fields from it (``zotune.settings.shares_settings``), so the command line, the YAML keys and the
Trainer's ``zo_*`` arguments are its fields and validate as Python does; the seed log stores the optimizer's
resolved settings (``ZOOptimizer.settings``) to rebuild it for a replay.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from zotune.errors import ConfigError, UnknownNameError
from zotune.methods import METHODS, SAMPLERS, Method, MethodConfig, SamplerConfig
from zotune.optim.updates import UPDATES, UpdateRule
from zotune.perturb import NOISES
from zotune.settings import is_finite, is_int, reject_unknown_keys, renamed_settings, shares_settings

__all__ = ["ZOConfig", "PERTURBATIONS", "EARLIER_DEFAULT_NOISES", "default_lr_eps", "draws_own_directions", "legacy_noise"]

PERTURBATIONS = ("auto", "in_place", "deferred")
# n-SPSA uses a handful of directions (MeZO's appendix: up to 16); a step keeps 2 n losses, and 10^8 would run
# for days before its first update.
MAX_DIRECTIONS = 4096
EPS = 1e-3  # MeZO's perturbation scale for full fine-tuning (arXiv 2305.17333, appendix E)
# Adapters train a few weights at larger scales: MeZO's (lr, eps) for LoRA and prefix tuning (the larger lr of
# each of its grids: LoRA {1e-4, 5e-5}, prefix {1e-2, 1e-3}; arXiv 2305.17333, appendix E).
_ADAPTER_DEFAULTS = {"lora": (1e-4, 1e-2), "prefix": (1e-2, 1e-1)}


# What ``noise`` defaulted to before gaussian16 (zotune 0.3.0): a record of a method that draws its own directions
# names it without having chosen anything.
EARLIER_DEFAULT_NOISES = ("gaussian",)


def draws_own_directions(method: str) -> bool | None:
    """Whether the registered method draws its own directions (a ``noise_source`` of its own: LDSD, LOZO, ...),
    so that the ``noise`` setting means nothing for it; None for a name that is not registered."""
    try:
        return METHODS.get(method).impl_cls.noise_source is not Method.noise_source
    except (UnknownNameError, TypeError):
        return None


def legacy_noise(settings: dict[str, Any]) -> dict[str, Any]:
    """Settings recorded before ``gaussian`` became the counter-based stream (seed logs before version 2,
    summaries before zotune 0.2.0), with the stream their ``gaussian`` meant: ``torch-gaussian``, for the methods
    that draw the optimizer's noise (one with a stream of its own kept it)."""
    own = draws_own_directions(settings.get("method", "mezo"))
    if own is None:
        return settings  # an unknown method: whoever reads the settings reports it
    if own or settings.get("noise", "gaussian") != "gaussian":
        return settings
    return {**settings, "noise": "torch-gaussian"}


def default_lr_eps(method: str | MethodConfig, adapter: str | None = None) -> tuple[float, float]:
    """The learning rate and epsilon used when none is given: for full fine-tuning, the method's own lr (from
    the lr sweep on the default model, docs/results.md; MeZO's for a method registered without one) and
    ``EPS``; for an adapter (``lora``, ``prefix``), MeZO's values for it."""
    if adapter in _ADAPTER_DEFAULTS:
        return _ADAPTER_DEFAULTS[adapter]
    if not isinstance(method, (str, MethodConfig)):
        raise ConfigError(f"Invalid method: {method!r} (a registered method's name or a MethodConfig)")
    lr = METHODS.get(method.name if isinstance(method, MethodConfig) else method).lr
    return lr if lr is not None else METHODS.get("mezo").lr, EPS


def _setting(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


def _with_update_settings(cls: type) -> type:
    """Each registered update rule's settings (``momentum``; ``betas``, ``adam_eps``) as fields of ``cls``, their
    defaults and help written in the rule's config (``optim/updates.py``)."""
    for name in UPDATES.names():
        cls = shares_settings(UPDATES.get(name).config_cls)(cls)
    return cls


@dataclass
@_with_update_settings
class ZOConfig:
    """The settings of a ``ZOOptimizer``; each field's help says what it does, ``zotune train --help`` shows them.
    ``method`` and ``sampler`` also take a config object (``MethodConfig``, ``SamplerConfig``)."""

    method: str | MethodConfig = _setting("mezo", "registered ZO method (zotune list)")
    sampler: str | SamplerConfig | None = _setting(
        None, "which blocks each step perturbs and updates: full or adalezo (default: the method's own)")
    lr: float | None = _setting(
        None, "learning rate (default: the method's own, from its lr sweep on the default model, docs/results.md; "
              "with zotune train --peft, MeZO's: lora 1e-4, prefix 1e-2)")
    eps: float = _setting(EPS, "perturbation scale epsilon (with zotune train --peft, MeZO's: lora 1e-2, prefix 1e-1)")
    seed: int = _setting(0, "seeds the optimizer's generator (zotune train: and the batch order)")
    update: str = _setting("sgd", "update rule: sgd (MeZO's), momentum, sign, cons, adam")
    n_directions: int = _setting(1, "SPSA directions per step (n-SPSA); memory does not grow with it")
    weight_decay: float = _setting(0.0, "L2 weight decay (not on tensors of fewer than 2 dims: biases, norms)")
    fuse_restore: bool = _setting(True, "fuse the last restore into the sgd update (one pass over the weights "
                                        "fewer; in-place perturbation only)")
    perturbation: str = _setting(
        "auto", "in_place (MeZO's: probes written into the weights and undone), deferred (forward hooks show each "
                "module theta + eps z while it runs: bf16/fp16 weights never drift; needs the model) or auto: "
                "deferred for bf16/fp16 weights of a module, else in_place (docs/reliability.md)")
    direction_parallel: bool = _setting(
        False, "spread the n_directions over the ranks of the initialised torch.distributed group (needs deferred "
               "perturbation, the default then)")
    noise: str = _setting("gaussian16", "distribution of z: gaussian16 (MeZO's N(0, I) as 65,536 equally likely "
                                        "values from 16 random bits: E[z z^T] = I, about twice as fast to draw as "
                                        "gaussian), gaussian (N(0, I) through the inverse normal CDF of 32 bits; "
                                        "the default before zotune 0.3.0), rademacher (±1 signs, cheaper still; "
                                        "docs/performance.md), all from a counter-based hash, or torch-gaussian "
                                        "(torch's generator: gaussian before seed log version 2)")
    method_options: dict[str, Any] = field(default_factory=dict, metadata={"help": (
        "options of the method and of its sampler: each goes to the config that declares it, or to the one its "
        "prefix names (sampler.sample_fraction)")})

    def __post_init__(self) -> None:
        if isinstance(self.method, str):
            METHODS.get(self.method)  # an unknown name is refused here, with the closest ones
        if isinstance(self.sampler, str):
            SAMPLERS.get(self.sampler)
        if self.lr is None:
            self.lr = default_lr_eps(self.method)[0]
        if not (is_finite(self.lr) and self.lr >= 0.0):
            raise ConfigError(f"Invalid lr: {self.lr!r} (must be a finite number >= 0)")
        if not (is_finite(self.eps) and self.eps > 0.0):
            raise ConfigError(f"Invalid eps: {self.eps!r} (must be a finite number > 0)")
        if not (is_int(self.n_directions) and 1 <= self.n_directions <= MAX_DIRECTIONS):
            raise ConfigError(f"Invalid n_directions: {self.n_directions!r} (must be an integer from 1 to "
                              f"{MAX_DIRECTIONS})")
        if not (is_finite(self.weight_decay) and self.weight_decay >= 0.0):
            raise ConfigError(f"Invalid weight_decay: {self.weight_decay!r} (must be a finite number >= 0)")
        if not (is_int(self.seed) and 0 <= self.seed < 2**63):
            raise ConfigError(f"Invalid seed: {self.seed!r} (must be an integer from 0 to 2**63 - 1)")
        for name in ("fuse_restore", "direction_parallel"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"Invalid {name}: {getattr(self, name)!r} (must be true or false)")
        if self.perturbation not in PERTURBATIONS:
            raise ConfigError(f"Invalid perturbation: {self.perturbation!r} (one of {', '.join(PERTURBATIONS)})")
        if self.noise not in NOISES:
            raise ConfigError(f"Invalid noise: {self.noise!r} (one of {', '.join(NOISES.names())})")
        if self.direction_parallel and self.perturbation == "in_place":
            raise ConfigError("direction_parallel needs deferred perturbation: in-place probes leave each rank "
                              "its own rounding residue and the replicas would drift apart")
        if not isinstance(self.method_options, dict):
            raise ConfigError(f"Invalid method_options: {self.method_options!r} (must be a mapping)")
        rule = UPDATES.get(self.update)
        rule.config_cls(**self._rule_settings())  # the rule's own settings, checked by its config
        if isinstance(self.betas, list):  # as YAML and JSON give it
            self.betas = tuple(self.betas)
        if self.weight_decay and not rule.impl_cls.uses_weight_decay:
            raise ConfigError(f"weight_decay={self.weight_decay} is not supported with update={self.update!r}")

    def update_rule(self) -> UpdateRule:
        """A fresh instance of the update rule, with its own settings (the others are not its business)."""
        return UPDATES.build(self.update, self._rule_settings())

    def _rule_settings(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in UPDATES.options_of(self.update)}

    @classmethod
    def from_settings(cls, settings: dict[str, Any]) -> ZOConfig:
        """From a mapping (keywords of ``ZOOptimizer``, a seed-log header), naming every unknown key at once; a
        setting under its former name (a seed log written before the rename) is read under its new one."""
        settings = renamed_settings(settings)
        reject_unknown_keys(settings, cls, "ZOOptimizer setting(s)")
        return cls(**settings)
