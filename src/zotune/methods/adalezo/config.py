"""AdaLeZO's config: the layer bandit's hyperparameters, and how parameter names map to layers."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from zotune.errors import ConfigError
from zotune.methods.base import MethodConfig, check_option_types
from zotune.methods.sampling import SamplerConfig

__all__ = ["AdaLeZOConfig", "AdaLeZOMethodConfig", "DEFAULT_LAYER_PATTERN"]

# A decoder layer is a name with ``.layers.<i>.`` (LLaMA, OPT), ``.h.<i>.`` (GPT-2) or ``.block(s).<i>.`` (T5,
# others); the arm is the name up to the index, so encoder and decoder stacks get separate arms.
DEFAULT_LAYER_PATTERN = r"(?:^|\.)(?:layers|h|block|blocks)\.(\d+)\."


@dataclass
class AdaLeZOConfig(SamplerConfig):
    """AdaLeZO (arXiv 2604.18264): bandit sampling of layers with inverse probability weighting."""

    sample_fraction: float = field(default=0.2, metadata={"help": "rho: k = max(1, floor(rho * L)) draws per step"})
    temperature: float = field(default=0.6, metadata={"help": "tau: softmax temperature over normalised rewards"})
    uniform_mix: float = field(default=0.1, metadata={"help": "gamma: weight of the uniform distribution mixed in"})
    reward_rate: float = field(default=0.1, metadata={"help": "alpha: EMA rate of the |g| reward"})
    weight_clip: float = field(default=4.0, metadata={"help": "C: clip of 1/(k p_l); inf = unbiased, no clip"})
    rms_scaling: bool = field(default=False, metadata={"help": "divide each layer's weight by the RMS of g*w"})
    rms_beta: float = field(default=0.95, metadata={"help": "beta of the RMS scaling's EMA"})
    layer_pattern: str = field(default=DEFAULT_LAYER_PATTERN,
                               metadata={"help": "regex whose group 1 is the layer index in a parameter name"})
    embed_pattern: str = field(default="embed", metadata={"help": "substring of the embedding parameters' names"})

    def __post_init__(self) -> None:
        check_option_types(self)  # also turns weight_clip="inf" (a YAML string) into a float
        problems = []
        checks = (
            ("sample_fraction", 0.0 < self.sample_fraction <= 1.0, "in (0, 1]"),
            ("temperature", self.temperature > 0.0, "> 0"),
            ("uniform_mix", 0.0 <= self.uniform_mix <= 1.0, "in [0, 1]"),
            ("reward_rate", 0.0 < self.reward_rate <= 1.0, "in (0, 1]"),
            ("weight_clip", self.weight_clip >= 1.0 and not math.isnan(self.weight_clip), ">= 1 (inf: no clip)"),
            ("rms_beta", 0.0 <= self.rms_beta < 1.0, "in [0, 1)"),
        )
        for name, ok, allowed in checks:
            if not ok:
                problems.append(f"Invalid {name}: {getattr(self, name)!r} (must be {allowed})")
        try:
            groups = re.compile(self.layer_pattern).groups
        except re.error as exc:
            problems.append(f"Invalid layer_pattern {self.layer_pattern!r}: {exc}")
        else:
            if groups < 1:
                problems.append(f"Invalid layer_pattern {self.layer_pattern!r} (needs a group for the layer index)")
        if problems:
            raise ConfigError("; ".join(problems))


@dataclass
class AdaLeZOMethodConfig(MethodConfig):
    """The ``adalezo`` recipe: MeZO's hooks with the AdaLeZO sampler (AdaLeZO on ZO-SGD, or on the update rule
    chosen). Its options are the sampler's (``AdaLeZOConfig``)."""
