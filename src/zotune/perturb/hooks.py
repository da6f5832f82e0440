"""Deferred perturbation through forward hooks: a module sees theta + eps z only while its forward runs.

For every module that holds a trainable tensor directly (a ``Linear``'s weight, an ``Embedding``'s table, a norm's
scale), a pre-hook swaps the tensor's storage for ``engine.perturbed(block)`` and a post-hook, which also runs
when the forward raises, swaps the original back. Tied weights (an embedding shared with the LM head) are
perturbed in each module that uses them, with the same seeded noise. The weights are never written by a probe,
so bf16/fp16 runs do not drift; see ``perturb/engine.py``.

Two cases need no perturbed copy of a weight: a low-rank z (LOZO's) is added to a linear or embedding layer's
output, and a large linear or embedding weight is used ``ROW_GROUP`` values at a time, its output computed from
one group of perturbed rows after another (an 8B model's LM head would otherwise copy 1.05 GB in bf16).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from zotune.errors import ConfigError
from zotune.perturb.engine import Block, PerturbationEngine

__all__ = ["attach_perturbation_hooks", "used_by_rows", "ROW_GROUP"]

# A linear or embedding weight of more values than this is perturbed a group of rows of about this many values at
# a time (16 MB in bf16): large enough that each group's matmul runs at full speed.
ROW_GROUP = 1 << 23


def attach_perturbation_hooks(model: nn.Module, engine: PerturbationEngine) -> list[RemovableHandle]:
    """Make ``model``'s forward passes see the engine's pending perturbations. Returns the hook handles.

    Raises:
        ConfigError: the engine is not deferred, or a block is held by no module of ``model`` (its
            perturbation would never reach a forward pass).
    """
    if not engine.deferred:
        raise ConfigError("Perturbation hooks need a deferred PerturbationEngine")
    by_id = {id(b.param): b for b in engine.blocks}
    handles: list[RemovableHandle] = []
    reached: set[int] = set()
    for module in model.modules():
        owned = [(attr, by_id[id(p)]) for attr, p in module._parameters.items() if p is not None and id(p) in by_id]
        if owned:
            reached.update(b.index for _, b in owned)
            swap_in, swap_out, row_groups = _swappers(engine, owned)
            handles.append(module.register_forward_pre_hook(swap_in))
            handles.append(module.register_forward_hook(swap_out, always_call=True))
            if any(used_by_rows(module, attr, block.param) for attr, block in owned):
                handles.append(_ForwardByRows(module, row_groups))
    unreached = [b.name for b in engine.blocks if b.index not in reached]
    if unreached:
        for handle in handles:
            handle.remove()
        raise ConfigError(f"Deferred perturbation needs every trainable tensor to belong to a module of the "
                          f"model; these do not: {unreached[:5]}")
    return handles


def _low_rank_output(module: nn.Module, args: Any, output: torch.Tensor,
                     terms: list[tuple[float, torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    """``output`` plus the effect of ``W + sum c U Vᵀ`` on a linear layer (x (U Vᵀ)ᵀ = (x V) Uᵀ) or an embedding
    (rows of U, times Vᵀ): r (m + n) values a token, never an m x n tensor. Float32 arithmetic, one rounding."""
    delta = None
    for coef, u, v in terms:
        if isinstance(module, nn.Embedding):
            part = u[args[0]] @ v.T
        else:
            part = (args[0].float() @ v) @ u.T
        delta = part.mul_(coef) if delta is None else delta.add_(part, alpha=coef)
    return (output.float() + delta).to(output.dtype)


def _output_linear_in_weight(module: nn.Module, attr: str) -> bool:
    """A layer whose output is y = x Wᵀ (+ b) or W[ids], each output feature or token from one row of W: the
    case where a low-rank term can be added to the output and where the weight can be used by rows. Subclasses
    are left out, since their forward may do more (a scaled embedding)."""
    if attr != "weight":
        return False
    if type(module) is nn.Embedding:
        return module.max_norm is None
    return type(module) is nn.Linear


def used_by_rows(module: nn.Module, attr: str, param: torch.Tensor) -> bool:
    """Whether a probe uses ``module``'s tensor ``attr`` a group of rows at a time (no whole perturbed copy)."""
    return _output_linear_in_weight(module, attr) and param.dim() == 2 and param.numel() > ROW_GROUP


class _ForwardByRows:
    """Replaces a linear or embedding layer's forward, while attached, by one that computes its output from the
    groups of perturbed rows that the pre-hook found (``PerturbationEngine.perturbed_rows``); with none, the
    layer's own forward runs. ``remove()`` restores the forward, as a hook handle does."""

    def __init__(self, module: nn.Module, row_groups: list) -> None:
        self.module = module
        self.previous = module.__dict__.get("forward")  # a forward set on the instance (accelerate's hooks)
        original = module.forward

        def forward(input: torch.Tensor) -> torch.Tensor:
            if not row_groups:
                return original(input)
            groups = row_groups.pop()
            if isinstance(module, nn.Embedding):
                return _embedding_by_rows(module, input, groups)
            return _linear_by_rows(module, input, groups)

        module.forward = forward

    def remove(self) -> None:
        if self.previous is None:
            self.module.__dict__.pop("forward", None)
        else:
            self.module.forward = self.previous


def _linear_by_rows(module: nn.Linear, x: torch.Tensor, groups) -> torch.Tensor:
    out = None
    for first, last, rows in groups:
        bias = None if module.bias is None else module.bias[first:last]
        part = torch.nn.functional.linear(x, rows, bias)
        if out is None:
            out = part.new_empty(*part.shape[:-1], module.out_features)
        out[..., first:last] = part
    return out


def _embedding_by_rows(module: nn.Embedding, ids: torch.Tensor, groups) -> torch.Tensor:
    if ((ids < 0) | (ids >= module.num_embeddings)).any():  # the error of the layer's own forward
        raise IndexError("index out of range in self")
    out = None
    for first, last, rows in groups:
        if out is None:
            out = rows.new_empty(*ids.shape, rows.shape[1])
        hit = (ids >= first) & (ids < last)
        out[hit] = rows[ids[hit] - first]
    return out


def _swappers(engine: PerturbationEngine, owned: list[tuple[str, Block]]) -> tuple[Callable, Callable, list]:
    originals: list[tuple[torch.Tensor, torch.Tensor]] = []
    corrections: list[list[tuple[float, torch.Tensor, torch.Tensor]]] = []
    row_groups: list = []  # for _ForwardByRows

    def swap_in(module: nn.Module, args: Any) -> None:
        if not engine.pending:
            return
        for attr, block in owned:
            terms = engine.low_rank_terms(block) if _output_linear_in_weight(module, attr) else None
            if terms is not None:
                corrections.append(terms)  # added to the output, no perturbed copy of the weight
                continue
            if used_by_rows(module, attr, block.param):
                groups = engine.perturbed_rows(block, max(1, ROW_GROUP // block.param.shape[1]))
                if groups is not None:
                    row_groups.append(groups)  # built while the forward uses them, no perturbed copy
                    continue
            perturbed = engine.perturbed(block)
            if perturbed is not None:
                originals.append((block.param, block.param.data))
                block.param.data = perturbed

    def swap_out(module: nn.Module, args: Any, output: Any) -> Any:
        row_groups.clear()  # unused when the forward raised before reaching them
        while originals:
            param, data = originals.pop()
            param.data = data
        if not corrections or not isinstance(output, torch.Tensor):  # nothing to add, or the forward raised
            corrections.clear()
            return None
        terms = [term for found in corrections for term in found]
        corrections.clear()
        return _low_rank_output(module, args, output, terms)

    return swap_in, swap_out, row_groups
