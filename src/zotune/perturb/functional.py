"""Pure kernels of the perturbation engine: seed mixing and in-place noise arithmetic.

Every kernel does its arithmetic in float32 and rounds once into the parameter's dtype, so bf16/fp16 weights
are not rounded after each term (the public MeZO code rounds after each of +eps, -2eps, +eps and drifts).
"""

from __future__ import annotations

import torch

__all__ = ["mix_seed", "add_noise"]

_MASK64 = (1 << 64) - 1


def _splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def mix_seed(*parts: int) -> int:
    """Hash integers into one 63-bit seed (splitmix64 over the parts).

    Used to derive independent streams per (step seed, direction) and (direction seed, block index): nearby
    inputs give unrelated seeds, which plain ``seed + index`` does not.
    """
    x = 0
    for part in parts:
        x = _splitmix64(x ^ (int(part) & _MASK64))
    return x >> 1


def add_noise(param: torch.Tensor, z: torch.Tensor, coef: float) -> None:
    """``param += coef * z`` in place, in float32 arithmetic with one rounding for low-precision params.

    Args:
        param: the parameter tensor, any floating dtype.
        z: float32 noise with ``param``'s shape.
        coef: the scalar multiplier.
    """
    if param.dtype == torch.float32:
        param.add_(z, alpha=coef)
    else:
        param.copy_(param.float().add_(z, alpha=coef))
