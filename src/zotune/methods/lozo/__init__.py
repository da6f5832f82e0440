"""LOZO: registers ``lozo`` (Chen et al., arXiv 2410.07698), low-rank perturbations U Vᵀ with a lazy V."""

from zotune.methods.base import register_method
from zotune.methods.lozo.config import LOZOConfig
from zotune.methods.lozo.method import LOZO

__all__ = ["LOZO", "LOZOConfig"]

# lr: the sweep's choice (configs/bench/lr-sweep-lozo.yaml, SST-2): 3e-6 beat 1e-6, 1e-5 and 3e-5 in late dev
# accuracy; none diverged.
register_method("lozo", config_cls=LOZOConfig, method_cls=LOZO, lr=3e-6)
