"""The optimizer layer: ``ZOOptimizer`` (SPSA with the seed trick over the perturbation substrate) and the
update rules that consume its gradient estimate."""

from zotune.optim.config import PERTURBATIONS, ZOConfig, default_lr_eps, draws_own_directions, legacy_noise
from zotune.optim.optimizer import StepRecord, ZOOptimizer
from zotune.optim.updates import UPDATES, UpdateConfig, UpdateRule, register_update_rule

__all__ = ["ZOOptimizer", "ZOConfig", "default_lr_eps", "draws_own_directions", "legacy_noise", "StepRecord", "PERTURBATIONS", "UPDATES", "UpdateConfig", "UpdateRule", "register_update_rule"]
