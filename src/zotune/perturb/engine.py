"""The seeded perturbation engine shared by every method (SPEC §1).

A *block* is one named parameter tensor. Its noise for a direction seed ``s`` is regenerated on demand from a
``torch.Generator`` seeded with ``mix_seed(s, block.index)``, so any subset of blocks can be perturbed, restored
and updated independently, and no noise tensor is ever stored: memory is one block-sized scratch buffer.

Two ways to perturb:

- *in place* (MeZO's): ``theta += c z`` is written into the weights, and undone by ``theta -= c z``. In fp32 the
  undo is exact to rounding; in bf16/fp16 every +/- rounds to a coarse grid and the weights drift.
- *deferred*: ``perturb`` only records the pending ``(seed, coef)`` terms per block; ``perturbed(block)`` builds
  ``theta + sum c z`` in a temporary when a forward pass needs it (``perturb/hooks.py`` swaps it in for the
  owning module's forward). The weights themselves are only written by updates, so perturbation cannot drift
  them in any dtype, at the cost of one block-sized temporary during each module's forward.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import torch

from zotune.perturb.functional import add_noise, mix_seed

__all__ = ["Block", "StepPlan", "PerturbationEngine", "gaussian_direction", "DirectionFn"]

# direction(block, generator, out) fills ``out`` (float32, the block's shape) with one draw of z.
DirectionFn = Callable[["Block", torch.Generator, torch.Tensor], torch.Tensor]


def gaussian_direction(block: Block, generator: torch.Generator, out: torch.Tensor) -> torch.Tensor:
    """z ~ N(0, I), the MeZO direction."""
    return out.normal_(generator=generator)


@dataclass(frozen=True)
class Block:
    """One trainable tensor, in the fixed order the engine iterates.

    Attributes:
        index: position in the engine's block list; part of the noise seed.
        name: the parameter's qualified name (``model.layers.3.mlp.up_proj.weight``).
        param: the tensor itself (updated in place).
        decay: whether weight decay applies; False for biases and norm weights (tensors with fewer than 2 dims).
    """

    index: int
    name: str
    param: torch.Tensor
    decay: bool


@dataclass(frozen=True)
class StepPlan:
    """Which blocks take part in a step, with a perturbation scale and an update weight per block.

    MeZO uses every block with scale 1 and weight 1. ``scales[i]`` and ``weights[i]`` belong to ``blocks[i]``.
    """

    blocks: tuple[int, ...]
    scales: tuple[float, ...]
    weights: tuple[float, ...]

    @classmethod
    def full(cls, num_blocks: int) -> StepPlan:
        ones = (1.0,) * num_blocks
        return cls(tuple(range(num_blocks)), ones, ones)

    def __iter__(self):
        return iter(zip(self.blocks, self.scales, self.weights))


class PerturbationEngine:
    """Regenerates seeded noise per block and applies it in place.

    Args:
        named_params: ``(name, tensor)`` pairs, in the order that defines block indices.
        direction: how a direction is drawn (default Gaussian); methods may supply their own.
        deferred: record perturbations instead of writing them into the weights (see the module docstring).
    """

    def __init__(
        self,
        named_params: Iterable[tuple[str, torch.Tensor]],
        direction: DirectionFn = gaussian_direction,
        *,
        deferred: bool = False,
    ) -> None:
        self.blocks = [
            Block(i, name, p, decay=p.dim() >= 2) for i, (name, p) in enumerate(named_params)
        ]
        self.direction = direction
        self._generator = torch.Generator(device="cpu")
        largest = max((b.param.numel() for b in self.blocks), default=0)
        self._scratch = torch.empty(largest, dtype=torch.float32)
        # Deferred mode: block index -> {seed: coef} still to be added to theta for a forward pass.
        self.pending: dict[int, dict[int, float]] | None = {} if deferred else None

    @property
    def deferred(self) -> bool:
        return self.pending is not None

    def __len__(self) -> int:
        return len(self.blocks)

    def noise(self, seed: int, block: Block, direction: DirectionFn | None = None) -> torch.Tensor:
        """z for ``(seed, block)``, in float32. Returns a view of a shared scratch buffer: use it before the
        next call.

        Args:
            direction: draw with this instead of the engine's direction (LDSD regenerates the plain Gaussian
                part of its directions this way); the generator is seeded the same.
        """
        self._generator.manual_seed(mix_seed(seed, block.index))
        out = self._scratch[: block.param.numel()].view(block.param.shape)
        z = (direction or self.direction)(block, self._generator, out)
        return z.to(block.param.device) if z.device != block.param.device else z

    def perturb(self, seed: int, scale: float, plan: StepPlan) -> None:
        """theta_b <- theta_b + scale * s_b * z_b for every block b in ``plan`` (recorded only, when deferred)."""
        for b, block_scale, _ in plan:
            if self.pending is None:
                self.add_combination(self.blocks[b], [(seed, scale * block_scale)])
                continue
            terms = self.pending.setdefault(b, {})
            # +eps, -2 eps, +eps (and LDSD's +eps, -eps) cancel exactly in float64: scaling by 2 is exact.
            coef = terms.get(seed, 0.0) + scale * block_scale
            if coef == 0.0:
                terms.pop(seed, None)
                if not terms:
                    del self.pending[b]
            else:
                terms[seed] = coef

    def perturbed(self, block: Block) -> torch.Tensor | None:
        """theta + (pending terms) as a new tensor of the parameter's dtype, or None when nothing is pending.

        Arithmetic is float32 with one rounding, as for in-place updates.
        """
        terms = self.pending.get(block.index) if self.pending else None
        if not terms:
            return None
        out = block.param.detach().to(torch.float32, copy=True)
        for seed, coef in terms.items():
            out.add_(self.noise(seed, block), alpha=coef)
        return out.to(block.param.dtype)

    def add_combination(
        self, block: Block, terms: Sequence[tuple[int, float]], *, decay: float = 1.0
    ) -> None:
        """theta <- decay * theta + sum_i coef_i * z(seed_i), regenerating each z.

        Arithmetic is float32; a low-precision parameter is rounded once, after all terms.
        """
        param = block.param
        target = param if param.dtype == torch.float32 else param.float()
        if decay != 1.0:
            target.mul_(decay)
        for seed, coef in terms:
            if coef != 0.0:
                target.add_(self.noise(seed, block), alpha=coef)
        if target is not param:
            param.copy_(target)

    def combination(
        self,
        block: Block,
        terms: Sequence[tuple[int, float]],
        *,
        restore: tuple[int, float] | None = None,
    ) -> torch.Tensor:
        """sum_i coef_i * z(seed_i) as a new float32 tensor (the block's ZO gradient estimate).

        Args:
            restore: ``(seed, coef)``: also add ``coef * z(seed)`` to the parameter while that z is in hand, so a
                pending restore costs no extra noise generation.
        """
        acc = torch.zeros(block.param.shape, dtype=torch.float32, device=block.param.device)
        restored = restore is None
        for seed, coef in terms:
            z = self.noise(seed, block)
            if not restored and seed == restore[0]:
                add_noise(block.param, z, restore[1])
                restored = True
            acc.add_(z, alpha=coef)
        if not restored:
            self.add_combination(block, [restore])
        return acc
