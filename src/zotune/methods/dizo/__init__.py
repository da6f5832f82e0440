"""DiZO: registers the ``dizo`` method (ZO steps plus periodic divergence-driven projection rounds)."""

from zotune.methods.base import register_method
from zotune.methods.dizo.config import DEFAULT_PROJECTED_PATTERNS, DiZOConfig
from zotune.methods.dizo.method import DiZO

__all__ = ["DiZO", "DiZOConfig", "DEFAULT_PROJECTED_PATTERNS"]

# lr: the sweep's choice (configs/bench/lr-sweep.yaml, docs/results.md): 3e-5 beat 1e-5.
register_method("dizo", config_cls=DiZOConfig, method_cls=DiZO, lr=3e-5)
