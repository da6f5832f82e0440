"""DiZO's config: the projection schedule, its ZO probes, and which tensors are projected."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from zotune.errors import ConfigError
from zotune.methods.base import MethodConfig, check_option_types

__all__ = ["DiZOConfig", "DEFAULT_PROJECTED_PATTERNS"]

# Full fine-tuning: the attention key and value projection weights (OPT and LLaMA both name them so); LoRA: every
# LoRA A/B tensor (in LoRA mode only those are trainable, so the first two match nothing). Selected by name,
# never by model type.
DEFAULT_PROJECTED_PATTERNS = (r"(^|\.)k_proj\.weight$", r"(^|\.)v_proj\.weight$", r"\.lora_[AB]\.")


@dataclass
class DiZOConfig(MethodConfig):
    """DiZO (arXiv 2502.03304): divergence-driven projection of the displacement from the pretrained weights."""

    interval: int = field(default=50, metadata={"help": "kappa: a projection round after every this many steps"})
    probes: int = field(default=10, metadata={"help": "J: two-point ZO probes per round (2J forward passes)"})
    probe_eps: float = field(default=0.1, metadata={"help": "eps_p: perturbation scale of the ratio probes"})
    probe_lr: float = field(default=2.0, metadata={"help": "eta_p: learning rate of the ratios"})
    ratio_range: float = field(default=0.2, metadata={"help": "tau: ratios are clipped to [1 - tau, 1 + tau]"})
    projected_patterns: tuple[str, ...] = field(
        default=DEFAULT_PROJECTED_PATTERNS,
        metadata={"help": "regexes; a trainable tensor whose name matches any of them is projected"})

    def __post_init__(self) -> None:
        if isinstance(self.projected_patterns, str):
            self.projected_patterns = (self.projected_patterns,)
        self.projected_patterns = tuple(self.projected_patterns)
        check_option_types(self)
        problems = []
        for name in ("interval", "probes"):
            value = getattr(self, name)
            if value < 1:
                problems.append(f"Invalid {name}: {value!r} (must be an integer >= 1)")
        for name, ok, allowed in (
            ("probe_eps", self.probe_eps > 0, "> 0"),
            ("probe_lr", self.probe_lr >= 0, ">= 0"),
            # Probed ratios reach 1 +- 2 tau: below 0.5 they stay positive, so a probe is always undone exactly.
            ("ratio_range", 0 < self.ratio_range < 0.5, "in (0, 0.5)"),
        ):
            if not ok:
                problems.append(f"Invalid {name}: {getattr(self, name)!r} (must be {allowed})")
        if not self.projected_patterns:
            problems.append("Invalid projected_patterns: empty (DiZO would project nothing)")
        for pattern in self.projected_patterns:
            if not isinstance(pattern, str):
                problems.append(f"Invalid projected_patterns entry {pattern!r} (must be a string)")
                continue
            try:
                re.compile(pattern)
            except re.error as exc:
                problems.append(f"Invalid projected_patterns entry {pattern!r}: {exc}")
        if problems:
            raise ConfigError("; ".join(problems))
