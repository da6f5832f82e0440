"""FZOO: registers ``fzoo`` (Dang et al., arXiv 2506.09034), N one-sided Rademacher probes normalised by the
deviation of their losses."""

from zotune.methods.base import register_method
from zotune.methods.fzoo.config import FZOOConfig
from zotune.methods.fzoo.method import FZOO

__all__ = ["FZOO", "FZOOConfig"]

# lr: the sweep's choice (configs/bench/lr-sweep-fzoo.yaml, SST-2): 3e-6 beat 1e-6, 3e-7 and 1e-7; 1e-5 diverged.
register_method("fzoo", config_cls=FZOOConfig, method_cls=FZOO, lr=3e-6)
