"""Low-rank directions as a noise source: z = U Vᵀ for a matrix block, a Gaussian vector for any other.

U (m x r) comes from the direction's seed, V (n x r) from the seed of the current lazy period and the block's
index, so both are regenerated on demand and never stored. Adding ``c z`` to a matrix is one ``addmm_`` pass
over it (r (m + n) random values, no m x n temporary); only ``fill`` (the elementwise update rules, which need
the block's estimate as a tensor) forms U Vᵀ.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from zotune.perturb import NoiseSource, mix_seed
from zotune.perturb.noise import NoiseReader, TorchGaussianNoise

__all__ = ["LowRankNoise", "as_matrix"]


def as_matrix(shape: torch.Size) -> tuple[int, int] | None:
    """(m, n) of a block perturbed in low rank: a tensor of 2 or more dims, as (shape[0], the rest); else None."""
    if len(shape) < 2:
        return None
    rows = shape[0]
    cols = 1
    for size in shape[1:]:
        cols *= size
    return rows, cols


class LowRankNoise(NoiseSource):
    """z = U Vᵀ of rank ``rank`` for matrices, z ~ N(0, I) for vectors (LOZO's choice for biases and norms).

    Args:
        rank: r.
        period_seed: returns the seed of V for the current lazy period.
    """

    name = "lozo-low-rank"
    serial = False  # addmm_ already uses every thread

    def __init__(self, rank: int, period_seed: Callable[[], int]) -> None:
        self.rank = rank
        self.period_seed = period_seed
        self._gaussian = TorchGaussianNoise()

    def reader(self, seed: int) -> NoiseReader:
        return self._gaussian.reader(seed)

    def block_reader(self, seed: int, block) -> NoiseReader:
        shape = as_matrix(block.param.shape)
        if shape is None:
            return self._gaussian.reader(seed)
        return _LowRankReader(seed, mix_seed(self.period_seed(), block.index), shape, self.rank)


class _LowRankReader(NoiseReader):
    def __init__(self, u_seed: int, v_seed: int, shape: tuple[int, int], rank: int) -> None:
        self.u_seed, self.v_seed, self.shape, self.rank = u_seed, v_seed, shape, rank

    def factors(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        (m, n), r = self.shape, self.rank
        u = torch.randn(m, r, generator=torch.Generator().manual_seed(self.u_seed))
        v = torch.randn(n, r, generator=torch.Generator().manual_seed(self.v_seed))
        return u.to(device), v.to(device)

    def fill(self, out: torch.Tensor) -> torch.Tensor:
        u, v = self.factors(out.device)
        torch.mm(u, v.T, out=out.view(self.shape))
        return out

    def add_to(self, target: torch.Tensor, coef: float, buffer: torch.Tensor, *, serial: bool = False) -> None:
        u, v = self.factors(target.device)
        target.view(self.shape).addmm_(u, v.T, alpha=coef)
