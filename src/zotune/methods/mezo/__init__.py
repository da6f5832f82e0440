from zotune.methods.base import register_method
from zotune.methods.mezo.config import MeZOConfig
from zotune.methods.mezo.method import MeZO

__all__ = ["MeZO", "MeZOConfig"]

# lr: the sweep's choice (configs/bench/lr-sweep.yaml, docs/results.md): 3e-5 beat 1e-5; 1e-4 diverged.
register_method("mezo", config_cls=MeZOConfig, method_cls=MeZO, lr=3e-5)
