"""LDSD: registers the ``ldsd`` method (a learned direction-sampling policy, best of K candidates)."""

from zotune.methods.base import register_method
from zotune.methods.ldsd.config import LDSDConfig
from zotune.methods.ldsd.method import LDSD

__all__ = ["LDSD", "LDSDConfig"]

# lr: the sweep's choice (configs/bench/lr-sweep.yaml, docs/results.md), under the paper's cosine schedule: 3e-5
# with eta_mu 3e-3 beat 1e-5, and eta_mu 1e-3 and 6e-3 (the paper's range).
register_method("ldsd", config_cls=LDSDConfig, method_cls=LDSD, lr=3e-5)
