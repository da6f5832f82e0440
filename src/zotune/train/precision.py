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

__all__ = ["AUTOCAST_DTYPES", "AUTO", "check_autocast", "emulated_bf16", "forward_precision", "fastest_autocast",
           "resolve_autocast"]

AUTOCAST_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16}
AUTO = "auto"  # the fastest exact precision this machine has (fastest_autocast)


def check_autocast(autocast: str | None, dtype: str) -> None:
    """Raise ConfigError unless ``autocast`` is None, ``auto`` or a known dtype over float32 weights."""
    if autocast is None or autocast == AUTO:
        return
    if not isinstance(autocast, str) or autocast not in AUTOCAST_DTYPES:
        raise ConfigError(f"Invalid autocast: {autocast!r} (auto, bfloat16, float16 or none)")
    if dtype != "float32":
        raise ConfigError(f"--autocast {autocast} runs float32 weights in {autocast}; with --dtype {dtype} the "
                          "weights are already low-precision: drop one of the two")


def forward_precision(model: torch.nn.Module, autocast: str | None) -> contextlib.AbstractContextManager:
    """The context a forward pass of ``model`` runs in: autocast to ``autocast`` on the model's device, or nothing."""
    if autocast is None:
        return contextlib.nullcontext()
    device = next(model.parameters()).device.type
    return torch.autocast(device_type=device, dtype=AUTOCAST_DTYPES[autocast])


def fastest_autocast(dtype: str) -> tuple[str | None, str]:
    """The autocast a forward pass is fastest in on this machine, with float32 weights, and why.

    bf16 where the hardware multiplies bf16 matrices (CUDA with bf16; a CPU with AMX or AVX512-BF16, where a
    forward pass runs 1.5-3x faster than in float32: docs/performance.md), else none: a CPU without them emulates
    bf16, several times slower than float32. Low-precision weights take no autocast.
    """
    from zotune.train.machine import BF16_FLAGS, cpu_info

    if dtype != "float32":
        return None, f"the weights are {dtype} already"
    if torch.cuda.is_available():
        if torch.cuda.is_bf16_supported():
            return "bfloat16", "this GPU computes in bf16"
        return None, "this GPU has no bf16"
    flags = cpu_info()["cpu_bf16"]
    if flags:
        return "bfloat16", f"this CPU has bf16 instructions ({', '.join(flags)})"
    return None, f"this CPU has no bf16 instructions ({', '.join(BF16_FLAGS)}): bf16 would be emulated, slower"


def emulated_bf16(autocast: str | None, dtype: str) -> str | None:
    """Why bf16 asked for (``autocast`` or ``dtype``) will be slow here, or None: a CPU without bf16 instructions,
    and no GPU, emulates it (a forward pass of the default model takes 7x its float32 time on an AVX2-only EPYC:
    docs/performance.md). A grid made for bf16 machines would otherwise run for days on one, unannounced."""
    from zotune.train.machine import BF16_FLAGS, cpu_info

    if "bfloat16" not in (autocast, dtype) or torch.cuda.is_available() or cpu_info()["cpu_bf16"]:
        return None
    faster = "--dtype float32" if dtype == "bfloat16" else "--autocast auto, which picks float32 here,"
    return (f"bf16 is emulated on this CPU (it has no {' or '.join(BF16_FLAGS)}): forward passes run several times "
            f"slower than in float32 ({faster} is faster)")


def resolve_autocast(autocast: str | None, dtype: str) -> tuple[str | None, str]:
    """``auto`` turned into a dtype or None by :func:`fastest_autocast`; any other value kept, as asked for."""
    if autocast == AUTO:
        return fastest_autocast(dtype)
    return autocast, "as asked for"
