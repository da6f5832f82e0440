"""Deferred perturbation through forward hooks: a module sees theta + eps z only while its forward runs.

For every module that holds a trainable tensor directly (a ``Linear``'s weight, an ``Embedding``'s table, a norm's
scale), a pre-hook swaps the tensor's storage for ``engine.perturbed(block)`` and a post-hook, which also runs
when the forward raises, swaps the original back. Tied weights (an embedding shared with the LM head) are
perturbed in each module that uses them, with the same seeded noise. The weights are never written by a probe,
so bf16/fp16 runs do not drift; see ``perturb/engine.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from zotune.errors import ConfigError
from zotune.perturb.engine import Block, PerturbationEngine

__all__ = ["attach_perturbation_hooks"]


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
            swap_in, swap_out = _swappers(engine, owned)
            handles.append(module.register_forward_pre_hook(swap_in))
            handles.append(module.register_forward_hook(swap_out, always_call=True))
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


def _low_rank_capable(module: nn.Module, attr: str) -> bool:
    """A layer whose output is linear in its weight in the way _low_rank_output adds: y = x Wᵀ (+ b), or W[ids]."""
    if attr != "weight":
        return False
    if isinstance(module, nn.Embedding):
        return module.max_norm is None
    return type(module) is nn.Linear


def _swappers(engine: PerturbationEngine, owned: list[tuple[str, Block]]) -> tuple[Callable, Callable]:
    originals: list[tuple[torch.Tensor, torch.Tensor]] = []
    corrections: list[list[tuple[float, torch.Tensor, torch.Tensor]]] = []

    def swap_in(module: nn.Module, args: Any) -> None:
        if not engine.pending:
            return
        for attr, block in owned:
            terms = engine.low_rank_terms(block) if _low_rank_capable(module, attr) else None
            if terms is not None:
                corrections.append(terms)  # added to the output, no perturbed copy of the weight
                continue
            perturbed = engine.perturbed(block)
            if perturbed is not None:
                originals.append((block.param, block.param.data))
                block.param.data = perturbed

    def swap_out(module: nn.Module, args: Any, output: Any) -> Any:
        while originals:
            param, data = originals.pop()
            param.data = data
        if not corrections or not isinstance(output, torch.Tensor):  # nothing to add, or the forward raised
            corrections.clear()
            return None
        terms = [term for found in corrections for term in found]
        corrections.clear()
        return _low_rank_output(module, args, output, terms)

    return swap_in, swap_out
