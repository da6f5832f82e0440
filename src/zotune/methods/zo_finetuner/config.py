"""ZO Fine-tuner's config: which controller file, and how embedding blocks count in the energy normalisation."""

from __future__ import annotations

from dataclasses import dataclass, field

from zotune.errors import ConfigError
from zotune.methods.base import MethodConfig, check_option_types

__all__ = ["ZOFinetunerConfig", "EMBEDDING_RULES"]

EMBEDDING_RULES = ("auto", "touched", "full")


@dataclass
class ZOFinetunerConfig(MethodConfig):
    """ZO Fine-tuner (arXiv 2510.00419): per-block perturbation scales from a meta-trained controller."""

    controller: str = field(default="auto", metadata={
        "help": "controller file (.safetensors from `zotune meta-train`), a shipped controller's name, or auto "
                "(the shipped controller that fits the model)"})
    embedding_rule: str = field(default="auto", metadata={
        "help": "how an embedding block counts in the normalisation: touched (touched_rows x width, the "
                "paper's), full (every element), or auto (touched, but full for an embedding that is also the "
                "output layer, whose every row takes part in each step)"})
    touched_rows: int = field(default=240, metadata={
        "help": "rows of an embedding block counted under the touched rule: 15 x batch x world size in the paper "
                "(240 = 15 x 16)"})
    embedding_pattern: str = field(default=r"(^|\.)embed[^.]*\.weight$", metadata={
        "help": "regex naming the embedding blocks"})

    def __post_init__(self) -> None:
        check_option_types(self)
        problems = []
        if self.embedding_rule not in EMBEDDING_RULES:
            problems.append(f"Invalid embedding_rule: {self.embedding_rule!r} (choose from {', '.join(EMBEDDING_RULES)})")
        if self.touched_rows < 1:
            problems.append(f"Invalid touched_rows: {self.touched_rows!r} (must be an integer >= 1)")
        if not self.controller:
            problems.append("Invalid controller: '' (a file, a shipped controller's name, or auto)")
        if problems:
            raise ConfigError("; ".join(problems))
