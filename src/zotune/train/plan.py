"""A memory plan before loading: what each way of fine-tuning a model would hold in memory, from its config alone.

The model is built on the ``meta`` device (no weights, no memory) to count its parameters and find its largest
tensor; the estimates add the process's own footprint, the weights in their dtype, what a step keeps besides
(optimizer states, activations kept for a backward pass), its transient peak (the logits and their log-softmax)
and the load's (a checkpoint converted from another dtype). The coefficients were fitted to the peaks
``benchmarks/scale.py`` measured for LLaMA shapes from SmolLM2-135M to Llama-3-8B (docs/scale.md; batch 16 x 64
tokens, 2026-12-07, 2-core AMD EPYC), each estimate within 14% of its measurement.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["ModelShape", "PlanRow", "read_shape", "plan_rows", "available_memory", "PROCESS_BYTES"]

PROCESS_BYTES = 0.25e9  # python, torch and transformers imported, before any model
_NOISE_SCRATCH = 4 * (4 << 20)  # the engine's chunk buffers, one per noise thread


@dataclass(frozen=True)
class ModelShape:
    """What memory depends on: parameter count, the largest perturbed copy a deferred probe makes, and the widths a
    forward pass allocates."""

    params: int
    largest: int  # values of the largest tensor a probe copies whole (a large linear or embedding weight: one group)
    hidden: int
    intermediate: int
    layers: int
    vocab: int
    stored_bytes: int = 4  # bytes a parameter in the checkpoint's files (its config's dtype)
    kv_width: int = 0  # the width of the attention keys (and values): heads x head size; 0: the hidden size


@dataclass(frozen=True)
class PlanRow:
    """One mode's estimate: ``bytes``, its peak resident memory (what ``benchmarks/scale.py`` measures), and
    ``needed``, the part that cannot be given back: a load that converts the checkpoint's dtype peaks with the
    checkpoint's files mapped, pages the system drops when memory runs short, so they count in the peak and not
    in whether a run fits."""

    mode: str
    bytes: float
    note: str
    needed: float


def read_shape(spec: str, *, trust_remote_code: bool = False) -> ModelShape:
    """The shape of ``spec``'s model (built-in name, folder, hub id) from its config, without its weights.

    Raises:
        AssetError: the config cannot be read.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from zotune.assets import resolve_model_path
    from zotune.errors import AssetError
    from zotune.perturb import hooks

    source = resolve_model_path(spec)
    try:
        config = AutoConfig.from_pretrained(source, trust_remote_code=trust_remote_code)
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)
    except Exception as exc:  # transformers raises many kinds
        raise AssetError(f"Cannot read the config of {spec!r}: {(str(exc).splitlines() or [''])[0]}") from exc
    sizes = [p.numel() for p in model.parameters()]  # tied weights are counted once
    copied = [hooks.ROW_GROUP if hooks.used_by_rows(module, name, p) else p.numel()
              for module in model.modules() for name, p in module.named_parameters(recurse=False)]
    text = getattr(config, "text_config", config)
    hidden = getattr(text, "hidden_size", 0)
    heads = getattr(text, "num_attention_heads", None) or 1
    head_size = getattr(text, "head_dim", None) or hidden // heads
    kv_width = (getattr(text, "num_key_value_heads", None) or heads) * head_size
    stored = getattr(config, "dtype", None) or getattr(config, "torch_dtype", None)
    stored_bytes = 2 if str(stored).removeprefix("torch.") in ("bfloat16", "float16") else 4
    return ModelShape(params=sum(sizes), largest=max(copied), hidden=hidden,
                      intermediate=getattr(text, "intermediate_size", 4 * hidden),
                      layers=getattr(text, "num_hidden_layers", 1), vocab=getattr(text, "vocab_size", 0),
                      stored_bytes=stored_bytes, kv_width=kv_width)


def plan_rows(shape: ModelShape, *, batch: int, tokens: int) -> list[PlanRow]:
    """Peak memory (bytes) of each mode for batches of ``batch`` sequences of ``tokens`` tokens."""
    p, bt = shape.params, batch * tokens
    logits = bt * shape.vocab * 4  # float32 logits; the loss's log-softmax and a copy make three
    forward = 3 * logits + 4 * bt * max(shape.hidden, shape.intermediate) * 4
    # bf16 weights give bf16 logits, which the loss upcasts to float32 (the three float32 tensors of the fp32
    # forward besides); a probe's perturbed copy of a tensor lives only during its module's forward, before the
    # loss (a large linear or embedding weight is copied a group of rows at a time: perturb/hooks.py).
    bf16_forward = bt * shape.vocab * 2 + max(3 * logits, 2 * shape.largest) + 4 * bt * shape.intermediate * 2
    # Activations a backward pass keeps, float32, per token and layer: about 8 hidden-wide tensors (the norms'
    # inputs and outputs, queries, attention output, residuals), 4 key/value-wide (keys and values before and after
    # the rotary embedding) and 4 MLP-wide (gate, up, the activation, their product).
    kept = bt * shape.layers * (8 * shape.hidden + 4 * (shape.kv_width or shape.hidden) + 4 * shape.intermediate) * 4
    base = PROCESS_BYTES

    def row(mode: str, run: float, weight_bytes: int, note: str) -> PlanRow:
        # Loading converts the checkpoint's tensors to the weights' dtype with its files mapped, and their pages
        # resident until the load ends (measured: a bf16 checkpoint loaded as float32 peaks at 6 bytes a parameter).
        stored = shape.stored_bytes if shape.stored_bytes != weight_bytes else 0
        return PlanRow(mode, max(run, base + p * (weight_bytes + stored)), note,
                       needed=max(run, base + p * weight_bytes))

    return [
        row("inference (fp32)", base + 4 * p + forward, 4, "one forward pass, no training"),
        row("zotune MeZO, fp32", base + 4 * p + forward + _NOISE_SCRATCH, 4, "in place; inference + scratch"),
        row("zotune MeZO, fp32 + bf16 autocast", base + 6 * p + forward + _NOISE_SCRATCH, 4,
            "autocast caches a bf16 copy of the weights during a forward pass"),
        row("zotune MeZO, bf16 weights", base + 2 * p + bf16_forward + _NOISE_SCRATCH, 2,
            "deferred: a perturbed bf16 copy of one tensor at a time"),
        row("zotune MeZO + adam (fp32)", base + 12 * p + forward, 4, "two float32 moment buffers"),
        row("AdamW backprop (fp32)", base + 16 * p + 3 * logits + kept, 4, "weights, gradients, two moments"),
        row("AdamW + gradient checkpointing", base + 16 * p + 3 * logits + kept / 16 + bt * 16 * shape.hidden * 4,
            4, "one hidden state a layer, one layer recomputed"),
        row("LoRA backprop (fp32 base)", base + 4 * p + 6 * logits + kept, 4,
            "frozen weights, activations kept, their gradients"),
    ]


def available_memory() -> int | None:
    """Bytes the system could give this process now (MemAvailable), or None where /proc/meminfo is missing."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def least_bytes(shape: ModelShape, *, dtype: str, update: str) -> float:
    """What a zotune run cannot do without, whatever its batch: the process, the weights in ``dtype``, and the
    update rule's buffers (``momentum`` one float32 copy of the weights, ``adam`` two)."""
    weights = (2 if dtype in ("bfloat16", "float16") else 4) * shape.params
    buffers = {"momentum": 4, "adam": 8}.get(update, 0) * shape.params
    return PROCESS_BYTES + weights + buffers


def format_plan(shape: ModelShape, rows: list[PlanRow], free: int | None) -> list[str]:
    """The plan as markdown lines: each mode's peak and whether it fits in ``free`` bytes."""
    lines = [f"{shape.params / 1e6:,.0f} M parameters ({shape.layers} layers, hidden {shape.hidden}, vocabulary "
             f"{shape.vocab:,}); memory available now: " + ("unknown" if free is None else f"{free / 1e9:.1f} GB"),
             "", "| mode | peak memory | fits | what it holds |", "|---|---|---|---|"]
    for row in rows:
        fits = "?" if free is None else ("yes" if row.needed <= free else "no")
        lines.append(f"| {row.mode} | {row.bytes / 1e9:.2f} GB | {fits} | {row.note} |")
    return lines
