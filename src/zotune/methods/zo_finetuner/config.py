"""ZO Fine-tuner's config: which controller file, and how embedding blocks count in the energy normalisation."""

from __future__ import annotations

from dataclasses import dataclass, field

from zotune.errors import ConfigError
from zotune.methods.base import MethodConfig, check_option_types

__all__ = ["ZOFinetunerConfig", "EMBEDDING_RULES", "EMBEDDING_PATTERN", "embedding_rule_problem"]

EMBEDDING_RULES = ("auto", "touched", "full")
EMBEDDING_PATTERN = r"(^|\.)embed[^.]*\.weight$"   # names the embedding blocks of Llama-style models


def embedding_rule_problem(rule: object) -> str | None:
    """The message for an unknown embedding rule, or None: the method's config and the meta-trainer's share it."""
    if rule in EMBEDDING_RULES:
        return None
    return f"Invalid embedding_rule: {rule!r} (choose from {', '.join(EMBEDDING_RULES)})"


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
    embedding_pattern: str = field(default=EMBEDDING_PATTERN, metadata={
        "help": "regex naming the embedding blocks"})

    def __post_init__(self) -> None:
        check_option_types(self)
        problems = []
        if rule_problem := embedding_rule_problem(self.embedding_rule):
            problems.append(rule_problem)
        if self.touched_rows < 1:
            problems.append(f"Invalid touched_rows: {self.touched_rows!r} (must be an integer >= 1)")
        if not self.controller:
            problems.append("Invalid controller: '' (a file, a shipped controller's name, or auto)")
        if problems:
            raise ConfigError("; ".join(problems))
