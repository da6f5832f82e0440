"""AdaLeZO: registers the ``adalezo`` sampler (composes with any method and update rule) and the ``adalezo``
method recipe (MeZO's hooks with that sampler)."""

from zotune.methods.adalezo.config import AdaLeZOConfig, AdaLeZOMethodConfig
from zotune.methods.adalezo.sampler import AdaLeZOSampler, group_layers
from zotune.methods.base import register_method
from zotune.methods.mezo.method import MeZO
from zotune.methods.sampling import register_sampler

__all__ = ["AdaLeZOConfig", "AdaLeZOMethodConfig", "AdaLeZOSampler", "group_layers"]

register_sampler("adalezo", config_cls=AdaLeZOConfig, sampler_cls=AdaLeZOSampler)
# lr: the sweep's choice (configs/bench/lr-sweep.yaml, docs/results.md): 1e-5 beat 3e-6 and 3e-5; 1e-4 diverged.
register_method("adalezo", config_cls=AdaLeZOMethodConfig, method_cls=MeZO, sampler="adalezo", lr=1e-5)
