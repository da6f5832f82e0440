"""Mixed precision for forward passes: float32 weights, bf16 (or fp16) matrix products under ``torch.autocast``.

On CPUs with bf16 matrix units (AMX, AVX512-BF16) and on GPUs a forward pass under autocast runs 2-3x faster
than in float32 (docs/performance.md), while the weights stay float32: in-place perturbation and its restore stay
exact to float32 rounding, where bf16 weights would drift (docs/reliability.md) or need the slower deferred
path. Losses and log-probabilities are still computed in float32 (``candidate_scores`` casts the logits), so
only the network's own activations are rounded; the two probes of a step see the same rounding rules.
"""

from __future__ import annotations

import contextlib

import torch

from zotune.errors import ConfigError

__all__ = ["AUTOCAST_DTYPES", "check_autocast", "forward_precision"]

AUTOCAST_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16}


def check_autocast(autocast: str | None, dtype: str) -> None:
    """Raise ConfigError unless ``autocast`` is None or a known dtype over float32 weights."""
    if autocast is None:
        return
    if not isinstance(autocast, str) or autocast not in AUTOCAST_DTYPES:
        raise ConfigError(f"Invalid autocast: {autocast!r} (bfloat16, float16 or none)")
    if dtype != "float32":
        raise ConfigError(f"--autocast {autocast} runs float32 weights in {autocast}; with --dtype {dtype} the "
                          "weights are already low-precision: drop one of the two")


def forward_precision(model: torch.nn.Module, autocast: str | None) -> contextlib.AbstractContextManager:
    """The context a forward pass of ``model`` runs in: autocast to ``autocast`` on the model's device, or nothing."""
    if autocast is None:
        return contextlib.nullcontext()
    device = next(model.parameters()).device.type
    return torch.autocast(device_type=device, dtype=AUTOCAST_DTYPES[autocast])
