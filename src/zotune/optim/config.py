"""``ZOConfig``: every setting of ``ZOOptimizer``, with its default and its validation, in one place.

``ZOOptimizer`` takes one (or the same settings as keywords), ``TrainConfig`` builds one from its fields (so the
command line and the YAML validate optimizer settings exactly as Python does), and the seed log stores the
optimizer's resolved settings (``ZOOptimizer.hparams``) to rebuild it for a replay.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from zotune.errors import ConfigError
from zotune.methods import MethodConfig, SamplerConfig
from zotune.optim.updates import UpdateRule, build_update_rule
from zotune.perturb import NOISES
from zotune.values import is_finite, is_int, reject_unknown_keys

__all__ = ["ZOConfig", "PERTURBATIONS"]

PERTURBATIONS = ("auto", "in_place", "deferred")
# n-SPSA uses a handful of directions (MeZO's appendix: up to 16); a step keeps 2 n losses, and 10^8 would run
# for days before its first update.
MAX_DIRECTIONS = 4096


@dataclass
class ZOConfig:
    """The settings of a ``ZOOptimizer``.

    Attributes:
        method: a registered method name (``mezo``, ``adalezo``, ...) or a ``MethodConfig``.
        sampler: which blocks each step perturbs and updates: a registered sampler name (``full``, ``adalezo``)
            or a ``SamplerConfig``; None: the method's own (``full`` for MeZO, ``adalezo`` for ``adalezo``).
        lr: learning rate (1e-6, MeZO's full fine-tuning setting; ``zotune train`` uses each method's own, from
            the lr sweep on its default model: docs/results.md).
        eps: perturbation scale epsilon.
        seed: seeds the optimizer's own generator.
        update: update rule: ``sgd`` (MeZO), ``momentum``, ``sign``, ``cons``, ``adam``.
        n_directions: directions per step, n-SPSA; memory does not grow with it.
        weight_decay: L2 coefficient; skipped for tensors with fewer than 2 dims (biases, norms).
        momentum: for ``update="momentum"``.
        betas, adam_eps: for ``update="adam"``.
        fuse_restore: fuse the last restore into the ``sgd`` update (in-place perturbation only).
        perturbation: ``in_place`` (MeZO's: theta += eps z is written into the weights and undone), ``deferred``
            (forward hooks show each module theta + eps z while it runs, so bf16/fp16 weights cannot drift;
            needs the model as ``params``), or ``auto``: ``deferred`` for low-precision trainable tensors of a
            module, else ``in_place``.
        direction_parallel: spread the ``n_directions`` over the ranks of the initialised ``torch.distributed``
            process group (``zotune.optim.distributed``); needs deferred perturbation (the default then).
        directions: the distribution of z for methods that do not draw their own: ``gaussian`` (MeZO's) or
            ``rademacher`` (±1 signs from a counter-based hash; docs/performance.md).
        method_options: options of the method's config and of the sampler's, in one mapping; each goes to the
            config that declares it, or to the one its prefix names (``sampler.sample_fraction``).
    """

    method: str | MethodConfig = "mezo"
    sampler: str | SamplerConfig | None = None
    lr: float = 1e-6
    eps: float = 1e-3
    seed: int = 0
    update: str = "sgd"
    n_directions: int = 1
    weight_decay: float = 0.0
    momentum: float = 0.9
    betas: tuple[float, float] = (0.9, 0.999)
    adam_eps: float = 1e-8
    fuse_restore: bool = True
    perturbation: str = "auto"
    direction_parallel: bool = False
    directions: str = "gaussian"
    method_options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
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
        if self.directions not in NOISES:
            raise ConfigError(f"Invalid directions: {self.directions!r} (one of {', '.join(NOISES.names())})")
        if self.direction_parallel and self.perturbation == "in_place":
            raise ConfigError("direction_parallel needs deferred perturbation: in-place probes leave each rank "
                              "its own rounding residue and the replicas would drift apart")
        if not isinstance(self.method_options, dict):
            raise ConfigError(f"Invalid method_options: {self.method_options!r} (must be a mapping)")
        rule = self.update_rule()
        if self.weight_decay and not rule.uses_weight_decay:
            raise ConfigError(f"weight_decay={self.weight_decay} is not supported with update={self.update!r}")

    def update_rule(self) -> UpdateRule:
        """A fresh instance of the update rule, with its own settings (the others are not its business)."""
        return build_update_rule(self.update, momentum=self.momentum, betas=self.betas, adam_eps=self.adam_eps)

    @classmethod
    def from_settings(cls, settings: dict[str, Any]) -> ZOConfig:
        """From a mapping (keywords of ``ZOOptimizer``, a seed-log header), naming every unknown key at once."""
        reject_unknown_keys(settings, cls, "ZOOptimizer setting(s)")
        return cls(**settings)
