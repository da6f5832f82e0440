"""Subspace directions as a noise source: z = P Ψ for a matrix block, a Gaussian vector for any other.

P (m x k, k = min(r, m)) is column-orthonormal: the Q factor of a Gaussian m x k matrix with the signs of R's
diagonal moved into it, which makes it uniform (Haar) over such matrices. It comes from the seed of the current
period and the block's index, is computed once a period and cached (r values per row of each matrix, each
replaced by the next period's when that is first drawn), and is never saved: a resumed run recomputes it from the
period seed. Ψ (k x n) is Gaussian from the direction's seed. Adding ``c z`` to a matrix is one ``addmm_`` pass
over it; deferred perturbation adds ``c (x Ψᵀ) Pᵀ``-style low-rank terms to the layer's output instead
(``NoiseReader.factors`` gives ``(P, Ψᵀ)``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from zotune.perturb import NOISES, mix_seed
from zotune.perturb.noise import FactoredNoise, LowRankReader, as_matrix

__all__ = ["SubspaceNoise", "orthonormal_basis"]


def orthonormal_basis(rows: int, rank: int, seed: int) -> torch.Tensor:
    """A Haar-distributed column-orthonormal ``rows x min(rank, rows)`` float32 matrix drawn from ``seed``."""
    gaussian = torch.randn(rows, min(rank, rows), generator=torch.Generator().manual_seed(seed))
    q, r = torch.linalg.qr(gaussian)
    signs = torch.sign(torch.diagonal(r))
    signs[signs == 0] = 1.0
    return q * signs


class SubspaceNoise(FactoredNoise):
    """z = P Ψ in each matrix's subspace of dimension ``rank``; z ~ N(0, I) for the other tensors.

    Args:
        rank: r.
        period_seed: returns the seed of the current period's projections.
    """

    name = "zo-muon-subspace"

    def __init__(self, rank: int, period_seed: Callable[[], int]) -> None:
        super().__init__(NOISES.get("gaussian"))
        self.rank = rank
        self.period_seed = period_seed
        self._bases: dict[int, tuple[int, torch.Tensor]] = {}  # block index -> (period seed, P)

    def matrix_reader(self, seed: int, block, shape: tuple[int, int]) -> LowRankReader:
        return _SubspaceReader(seed, self.basis(block), shape)

    def basis(self, block) -> torch.Tensor:
        """P of ``block`` (a matrix) for the current period, on the block's device."""
        period = self.period_seed()
        cached = self._bases.get(block.index)
        if cached is None or cached[0] != period:
            rows = as_matrix(block.param.shape)[0]
            basis = orthonormal_basis(rows, self.rank, mix_seed(period, block.index)).to(block.param.device)
            self._bases[block.index] = cached = (period, basis)
        return cached[1]


class _SubspaceReader(LowRankReader):
    def __init__(self, seed: int, basis: torch.Tensor, shape: tuple[int, int]) -> None:
        super().__init__(shape)
        self.seed, self.basis = seed, basis

    def factors(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        coords = torch.randn(self.shape[1], self.basis.shape[1], generator=torch.Generator().manual_seed(self.seed))
        return self.basis.to(device), coords.to(device)  # (P, Ψᵀ): z = P Ψ
