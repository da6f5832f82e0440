"""LDSD's direction policy N(mu, sigma^2 I) as a noise stream: z = sigma xi + mu, xi ~ N(0, I) from the seed.

As a ``NoiseSource`` the policy is read chunk by chunk, so the engine draws several blocks at once on its worker
threads and needs no block-sized scratch buffer: a step's 2K + 1 perturbations ran on one thread before. A chunk
is filled with torch's ``normal_`` (chunked draws equal the whole-block draw), scaled and shifted by its slice of
mu: the same values, bit for bit, as drawing the whole block and computing ``sigma * xi + mu``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from zotune.perturb.noise import NoiseReader, NoiseSource, serially

__all__ = ["PolicyNoise"]


class PolicyNoise(NoiseSource):
    """z = sigma xi + mu_b for block b, where ``mean(b)`` is mu_b (read when a block's stream starts).

    Args:
        sigma: the policy's fixed spread.
        mean: the current mean of a block index (float32, the block's shape).
    """

    name = "ldsd-policy"

    def __init__(self, sigma: float, mean: Callable[[int], torch.Tensor]) -> None:
        self.sigma = sigma
        self.mean = mean

    def reader(self, seed: int) -> NoiseReader:
        raise TypeError("the LDSD policy's z depends on the block: use block_reader(seed, block)")

    def block_reader(self, seed: int, block) -> NoiseReader:
        return _PolicyReader(seed, self.sigma, self.mean(block.index).view(-1))


class _PolicyReader(NoiseReader):
    def __init__(self, seed: int, sigma: float, mean: torch.Tensor) -> None:
        self.generator = torch.Generator(device="cpu").manual_seed(seed)
        self.sigma = sigma
        self.mean = mean
        self.position = 0

    def fill(self, out: torch.Tensor) -> torch.Tensor:
        out.normal_(generator=self.generator)
        flat, start = out.view(-1), self.position
        mean = self.mean[start : start + flat.numel()]
        mean = mean if mean.device == out.device else mean.to(out.device)
        self.position += flat.numel()

        # Elementwise, in slices that stay on the calling thread (it may be one of the engine's workers).
        def shift(a: int, b: int) -> None:
            if self.sigma != 1.0:
                flat[a:b].mul_(self.sigma)
            flat[a:b].add_(mean[a:b])

        serially(shift, flat.numel())
        return out
