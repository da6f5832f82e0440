"""The controller: one tiny MLP per block mapping the block's state to its perturbation scale sigma_b, the energy
normalisation that turns sigmas into per-block scales, and the controller file.

Per block b: ``sigma_b = |W2 tanh(W1 x_b + b1) + b2|`` with ``x_b = [mean(theta_b), var(theta_b), L+_{t-1},
L-_{t-1}, sigma_{b,t-1}]`` (Linear(5->64), tanh, Linear(64->1), abs: 449 numbers per block). All blocks' MLPs are
held as stacked tensors and run as one batched product.

The file is a safetensors state dict keyed by parameter name (``<param>::fc1.weight``, ``::fc1.bias``,
``::fc2.weight``, ``::fc2.bias``, shaped as ``torch.nn.Linear``'s), with metadata naming the base model, the
recipe that produced it, and the shape of every parameter it controls.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from zotune.errors import ConfigError, StateError
from zotune.perturb import Block

__all__ = ["ControllerBank", "block_features", "normalised_scales", "block_counts", "output_tied",
           "resolve_controller", "SHIPPED", "FORMAT", "INPUTS", "HIDDEN"]

FORMAT = "zotune-zo-finetuner-controller"
INPUTS, HIDDEN = 5, 64
SHIPPED = Path(__file__).parent / "controllers"  # controllers meta-trained for built-in models, <model>.safetensors
_SEP = "::"


class ControllerBank(nn.Module):
    """One Linear(5->64)-tanh-Linear(64->1)-abs network per named block, evaluated together.

    Args:
        shapes: parameter name -> its shape, in block order.
        generator: seeds the initialisation. fc1 takes ``nn.Linear``'s default; fc2 starts near zero with bias 1,
            so a fresh controller gives sigma ~= 1 everywhere (MeZO) and meta-training moves it from there.
    """

    def __init__(self, shapes: dict[str, Sequence[int]], *, generator: torch.Generator | None = None,
                 metadata: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.shapes = {name: tuple(int(d) for d in shape) for name, shape in shapes.items()}
        self.names = list(self.shapes)
        self.metadata = dict(metadata or {})
        count = len(self.names)
        bound1, bound2 = 1 / math.sqrt(INPUTS), 0.1 / math.sqrt(HIDDEN)

        def uniform(*shape: int, bound: float) -> nn.Parameter:
            return nn.Parameter((torch.rand(*shape, generator=generator) * 2 - 1) * bound)

        self.w1 = uniform(count, HIDDEN, INPUTS, bound=bound1)
        self.b1 = uniform(count, HIDDEN, bound=bound1)
        self.w2 = uniform(count, HIDDEN, bound=bound2)
        self.b2 = nn.Parameter(torch.ones(count))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """``features``: (blocks, 5) -> sigma: (blocks,)."""
        hidden = torch.tanh(torch.einsum("bhi,bi->bh", self.w1, features.to(self.w1.dtype)) + self.b1)
        return (torch.einsum("bh,bh->b", self.w2, hidden) + self.b2).abs()

    # -- the file ---------------------------------------------------------------------------------------------
    def named_tensors(self) -> dict[str, torch.Tensor]:
        out = {}
        for i, name in enumerate(self.names):
            out[f"{name}{_SEP}fc1.weight"] = self.w1[i].detach().contiguous()
            out[f"{name}{_SEP}fc1.bias"] = self.b1[i].detach().contiguous()
            out[f"{name}{_SEP}fc2.weight"] = self.w2[i].detach().reshape(1, HIDDEN).contiguous()
            out[f"{name}{_SEP}fc2.bias"] = self.b2[i].detach().reshape(1).contiguous()
        return out

    def save(self, path: str | Path) -> Path:
        """Write the controller file (atomically); ``self.metadata`` (base model, recipe) goes in its header."""
        from safetensors.torch import save_file

        from zotune.files.durable import atomic_write

        meta = {"format": FORMAT, "version": "1", "shapes": json.dumps(self.shapes),
                **{k: v if isinstance(v, str) else json.dumps(v) for k, v in self.metadata.items()}}
        atomic_write(path, lambda tmp: save_file(self.named_tensors(), str(tmp), metadata=meta))
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> ControllerBank:
        """Read a controller file.

        Raises:
            StateError: the file is missing, not a controller file, or incomplete.
        """
        from safetensors import safe_open

        path = Path(path)
        if not path.is_file():
            raise StateError(f"No controller file {path}")
        try:
            with safe_open(str(path), framework="pt") as handle:
                meta = handle.metadata() or {}
                if meta.get("format") != FORMAT:
                    raise StateError(f"{path} is not a ZO Fine-tuner controller file (no {FORMAT!r} metadata)")
                tensors = {key: handle.get_tensor(key) for key in handle.keys()}
        except StateError:
            raise
        except Exception as exc:  # safetensors raises its own error types for a damaged file
            raise StateError(f"Cannot read controller file {path}: {exc}") from exc
        shapes = json.loads(meta["shapes"])
        extra = {k: v for k, v in meta.items() if k not in ("format", "version", "shapes")}
        bank = cls(shapes, metadata={k: _maybe_json(v) for k, v in extra.items()})
        try:
            with torch.no_grad():
                for i, name in enumerate(bank.names):
                    bank.w1[i] = tensors[f"{name}{_SEP}fc1.weight"]
                    bank.b1[i] = tensors[f"{name}{_SEP}fc1.bias"]
                    bank.w2[i] = tensors[f"{name}{_SEP}fc2.weight"].reshape(HIDDEN)
                    bank.b2[i] = tensors[f"{name}{_SEP}fc2.bias"].reshape(())
        except (KeyError, RuntimeError) as exc:
            raise StateError(f"Controller file {path} is incomplete or malformed ({exc})") from None
        return bank

    def fit(self, blocks: Sequence[Block], source: str = "the controller") -> ControllerBank:
        """This bank reordered to ``blocks``' order, after checking it controls exactly those tensors.

        Raises:
            ConfigError: names or shapes differ; every difference is listed (the first few of each kind).
        """
        model = {b.name: tuple(b.param.shape) for b in blocks}
        missing = [n for n in model if n not in self.shapes]
        extra = [n for n in self.shapes if n not in model]
        reshaped = [f"{n} {self.shapes[n]} vs the model's {model[n]}" for n in model
                    if n in self.shapes and self.shapes[n] != model[n]]
        if missing or extra or reshaped:
            def listing(label: str, items: list[str]) -> str:
                shown = ", ".join(items[:5]) + (f" and {len(items) - 5} more" if len(items) > 5 else "")
                return f"{len(items)} {label}: {shown}"
            parts = [listing(label, items) for label, items in (
                ("trainable tensors of the model not in the controller", missing),
                ("controller entries not in the model", extra),
                ("shapes differ", reshaped)) if items]
            base = self.metadata.get("base_model")
            raise ConfigError(f"{source} does not fit this model"
                              + (f" (it was meta-trained for {base})" if base else "") + ": " + "; ".join(parts)
                              + ". Meta-train one for this model with `zotune meta-train`")
        order = [self.names.index(n) for n in model]
        bank = ControllerBank(model, metadata=self.metadata)
        with torch.no_grad():
            for mine, theirs in ((bank.w1, self.w1), (bank.b1, self.b1), (bank.w2, self.w2), (bank.b2, self.b2)):
                mine.copy_(theirs[order])
        return bank


def _maybe_json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


@torch.no_grad()
def block_features(blocks: Sequence[Block], losses: tuple[float, float], sigma: torch.Tensor) -> torch.Tensor:
    """The controllers' inputs, (blocks, 5): mean and (population) variance of each block, the previous step's
    L+ and L-, and each block's previous sigma; detached, float32."""
    if not blocks:
        return torch.zeros(0, 5)
    # Stacked where the weights live and copied once: one device sync per step, not two per block.
    stats = torch.stack([torch.stack(torch.var_mean(b.param.detach().float(), unbiased=False)[::-1])
                         for b in blocks]).to("cpu", torch.float32)
    previous = torch.tensor(losses, dtype=torch.float32).expand(len(blocks), 2)
    return torch.cat([stats, previous, sigma.detach().float().reshape(-1, 1)], dim=1)


def output_tied(model: nn.Module | None) -> frozenset[str]:
    """The names of ``model``'s trainable tensors that are also its output layer's weight (an LM head tied to the
    input embedding, as in SmolLM2 and LLaMA-3.2-1B); empty for an untied model or no model."""
    head = model.get_output_embeddings() if callable(getattr(model, "get_output_embeddings", None)) else None
    weight = getattr(head, "weight", None)
    if weight is None:
        return frozenset()
    return frozenset(name for name, param in model.named_parameters() if param is weight and param.requires_grad)


def block_counts(blocks: Sequence[Block], *, rule: str, touched_rows: int, pattern: str,
                 tied: frozenset[str] = frozenset()) -> torch.Tensor:
    """n_b per block (float64): its element count, or for an embedding block under the ``touched`` rule
    ``min(touched_rows, rows) x width``, the elements a batch can give gradient to.

    ``auto`` is ``touched`` except for the embeddings named in ``tied`` (``output_tied``): a tied embedding is
    also the output layer, so every row takes part in each loss, and counting only the looked-up rows would let
    a controller put many times MeZO's perturbation energy into it unseen by the normalisation (the paper's
    premise for the rule, that only looked-up rows carry gradient, is an untied embedding's)."""
    embedding = re.compile(pattern)
    counts = []
    for block in blocks:
        numel = block.param.numel()
        touched = rule == "touched" or (rule == "auto" and block.name not in tied)
        if touched and block.param.dim() == 2 and embedding.search(block.name):
            numel = min(touched_rows, block.param.shape[0]) * block.param.shape[1]
        counts.append(numel)
    return torch.tensor(counts, dtype=torch.float64)


def normalised_scales(sigma: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """``c sigma_b`` with ``c = sqrt(sum n_b / sum n_b sigma_b^2)``, so that ``sum n_b (c sigma_b)^2 = sum n_b``:
    MeZO's total perturbation energy, with sigma deciding only how it is shared between blocks.

    Computed in float64 from ``sigma / max(sigma)``, so equal sigmas give scales of exactly 1.0 (MeZO, bit for bit).
    All-zero sigmas (a degenerate controller) give 1.0 too. Differentiable in ``sigma`` except through ``c``,
    which the meta-gradient treats as a constant (ZO Fine-tuner, arXiv 2510.00419): use :func:`energy_constant` for that.
    """
    sigma = sigma.to(torch.float64)
    top = sigma.detach().max()
    if not top > 0:
        return torch.ones_like(sigma)
    relative = sigma / top
    return energy_constant(relative, counts) * relative


def energy_constant(sigma: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """c = sqrt(sum n_b / sum n_b sigma_b^2), detached."""
    sigma = sigma.detach().to(torch.float64)
    return torch.sqrt(counts.sum() / (counts * sigma * sigma).sum())


def resolve_controller(name: str, blocks: Sequence[Block]) -> tuple[ControllerBank, str]:
    """The controller ``name`` names (a file, a shipped controller's name, or ``auto``) fitted to ``blocks``,
    and a description of where it came from.

    Raises:
        ConfigError: no such file or shipped controller, or it does not fit the model.
        StateError: the file is damaged.
    """
    shipped = sorted(SHIPPED.glob("*.safetensors"))
    if name == "auto":
        model = {b.name: tuple(b.param.shape) for b in blocks}
        for path in shipped:
            bank = ControllerBank.load(path)
            if bank.shapes.keys() == model.keys() and all(bank.shapes[n] == model[n] for n in model):
                return bank.fit(blocks, f"shipped controller {path.stem}"), f"shipped controller {path.stem}"
        available = ", ".join(p.stem for p in shipped) or "none"
        raise ConfigError(f"No shipped ZO Fine-tuner controller fits this model (shipped: {available}). "
                          "Meta-train one with `zotune meta-train --model <model> --task <task> --out ctrl.safetensors`"
                          " and pass --option controller=ctrl.safetensors")
    path = Path(name)
    if not path.is_file() and (SHIPPED / f"{name}.safetensors").is_file():
        path = SHIPPED / f"{name}.safetensors"
    if not path.is_file():
        available = ", ".join(p.stem for p in shipped) or "none"
        raise ConfigError(f"No controller file {name!r} (and no shipped controller of that name; shipped: "
                          f"{available})")
    return ControllerBank.load(path).fit(blocks, f"controller {path}"), f"controller {path}"
