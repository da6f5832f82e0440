"""Low-rank directions as a noise source: z = U Vᵀ for a matrix block, a Gaussian vector for any other.

U (m x r) comes from the direction's seed, V (n x r) from the seed of the current lazy period and the block's
index, so both are regenerated on demand and never stored; ``perturb.noise.LowRankReader`` adds ``c U Vᵀ`` to a
matrix in one ``addmm_`` pass.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from zotune.perturb import mix_seed
from zotune.perturb.noise import FactoredNoise, LowRankReader, TorchGaussianNoise, as_matrix

__all__ = ["LowRankNoise", "as_matrix"]


class LowRankNoise(FactoredNoise):
    """z = U Vᵀ of rank ``rank`` for matrices, z ~ N(0, I) for vectors (LOZO's choice for biases and norms).

    Args:
        rank: r.
        period_seed: returns the seed of V for the current lazy period.
    """

    name = "lozo-low-rank"

    def __init__(self, rank: int, period_seed: Callable[[], int]) -> None:
        super().__init__(TorchGaussianNoise())
        self.rank = rank
        self.period_seed = period_seed

    def matrix_reader(self, seed: int, block, shape: tuple[int, int]) -> LowRankReader:
        return _LowRankReader(seed, mix_seed(self.period_seed(), block.index), shape, self.rank)


class _LowRankReader(LowRankReader):
    def __init__(self, u_seed: int, v_seed: int, shape: tuple[int, int], rank: int) -> None:
        super().__init__(shape)
        self.u_seed, self.v_seed, self.rank = u_seed, v_seed, rank

    def factors(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        (m, n), r = self.shape, self.rank
        u = torch.randn(m, r, generator=torch.Generator().manual_seed(self.u_seed))
        v = torch.randn(n, r, generator=torch.Generator().manual_seed(self.v_seed))
        return u.to(device), v.to(device)
