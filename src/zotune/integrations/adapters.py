"""Parameter-efficient modes through ``peft``: LoRA and prefix tuning, with MeZO's settings (arXiv 2305.17333).

Wrapping freezes the base weights, so ``ZOOptimizer`` (which takes the tensors with ``requires_grad``) perturbs
and updates the adapter alone, and checkpoints hold the adapter alone. The adapter's initial values (LoRA's A)
come from a generator seeded by the run's seed, without touching the global RNG, so a run and its replay start
from the same adapter.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from zotune.errors import ConfigError

__all__ = ["PeftSettings", "PEFT_MODES", "apply_peft", "load_adapter"]

PEFT_MODES = ("lora", "prefix")


@dataclass
class PeftSettings:
    """Which adapter to add. Defaults are MeZO's: LoRA r = 8, alpha = 16 on the attention query and value
    projections; prefix tuning with 5 virtual tokens."""

    mode: str
    lora_r: int = field(default=8, metadata={"help": "LoRA rank"})
    lora_alpha: int = field(default=16, metadata={"help": "LoRA alpha"})
    lora_targets: str | list[str] = field(default="q_proj,v_proj", metadata={
        "help": "modules LoRA adapts, comma-separated"})
    prefix_tokens: int = field(default=5, metadata={"help": "virtual tokens of prefix tuning"})

    def __post_init__(self) -> None:
        if self.mode not in PEFT_MODES:
            raise ConfigError(f"Invalid peft mode: {self.mode!r} (one of {', '.join(PEFT_MODES)})")
        if isinstance(self.lora_targets, str):
            self.lora_targets = [t.strip() for t in self.lora_targets.split(",") if t.strip()]
        for name in ("lora_r", "lora_alpha", "prefix_tokens"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"Invalid {name}: {value!r} (must be an integer >= 1)")
        if not self.lora_targets:
            raise ConfigError("Invalid lora_targets: empty (name the modules LoRA adapts, e.g. q_proj,v_proj)")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _peft_config(settings: PeftSettings):
    from peft import LoraConfig, PrefixTuningConfig

    if settings.mode == "lora":
        return LoraConfig(r=settings.lora_r, lora_alpha=settings.lora_alpha, target_modules=settings.lora_targets,
                          lora_dropout=0.0, bias="none", task_type="CAUSAL_LM")
    return PrefixTuningConfig(num_virtual_tokens=settings.prefix_tokens, task_type="CAUSAL_LM")


def apply_peft(model: torch.nn.Module, settings: PeftSettings, *, seed: int = 0) -> torch.nn.Module:
    """Wrap ``model`` in a ``peft`` model with the adapter of ``settings``, initialised from ``seed``.

    Raises:
        ConfigError: the adapter does not fit the model (e.g. no module named like a LoRA target).
    """
    from peft import get_peft_model

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            wrapped = get_peft_model(model, _peft_config(settings))
        except ValueError as exc:
            raise ConfigError(f"Cannot add a {settings.mode} adapter to this model: "
                              f"{str(exc).splitlines()[0]}") from exc
    return wrapped.eval()


def load_adapter(model: torch.nn.Module, folder) -> torch.nn.Module:
    """Load a saved adapter folder (``adapter_config.json`` + weights) onto a base model."""
    from peft import PeftModel

    try:
        return PeftModel.from_pretrained(model, str(folder)).eval()
    except (OSError, ValueError) as exc:
        raise ConfigError(f"Cannot load the adapter in {folder}: {str(exc).splitlines()[0]}") from exc
