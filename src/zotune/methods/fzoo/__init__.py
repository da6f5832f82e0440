"""FZOO: registers ``fzoo`` (Dang et al., arXiv 2506.09034), N one-sided Rademacher probes normalised by the
deviation of their losses."""

from zotune.methods.base import register_method
from zotune.methods.fzoo.config import FZOOConfig
from zotune.methods.fzoo.method import FZOO

__all__ = ["FZOO", "FZOOConfig"]

# lr: provisional, scale-matched to MeZO's swept 3e-5 (the normalised step moves a weight by about lr/(eps sqrt(N)):
# docs/methods/fzoo.md), until FZOO's own sweep (configs/bench/lr-sweep-fzoo.yaml) sets it.
register_method("fzoo", config_cls=FZOOConfig, method_cls=FZOO, lr=3e-7)
