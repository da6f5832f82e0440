"""The seeded perturbation engine shared by every method (MeZO, arXiv 2305.17333).

A *block* is one named parameter tensor. Its noise for a direction seed ``s`` is regenerated on demand from the
seed ``mix_seed(s, block.index)``, so any subset of blocks can be perturbed, restored and updated independently,
and no noise tensor is ever stored. With a streamable distribution (``perturb/noise.py``: Gaussian, Rademacher)
noise is added to the weights chunk by chunk through a 4 MB scratch buffer per worker thread, so in-place
perturbation needs no block-sized temporary, and blocks are spread over ``workers`` threads (each block's noise
depends on its own seed only, so the result does not depend on the thread count). Methods with their own
direction (a ``DirectionFn``) draw whole blocks, one at a time.

Two ways to perturb:

- *in place* (MeZO's): ``theta += c z`` is written into the weights, and undone by ``theta -= c z``. In fp32 the
  undo is exact to rounding; in bf16/fp16 every +/- rounds to a coarse grid and the weights drift.
- *deferred*: ``perturb`` only records the pending ``(seed, coef)`` terms per block; ``perturbed(block)`` builds
  ``theta + sum c z`` in a temporary when a forward pass needs it (``perturb/hooks.py`` swaps it in for the
  owning module's forward). The weights themselves are only written by updates, so perturbation cannot drift
  them in any dtype, at the cost of one block-sized temporary during each module's forward.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import torch

from zotune.perturb.functional import add_noise, mix_seed
from zotune.perturb.noise import (
    CHUNK,
    NOISES,
    SMALL_BLOCK,
    LowRankReader,
    NoiseReader,
    NoiseSource,
    chunks,
    serially,
)

__all__ = ["Block", "StepPlan", "PerturbationEngine", "gaussian_direction", "DirectionFn", "default_workers"]

# direction(block, generator, out) fills ``out`` (float32, the block's shape) with one draw of z.
DirectionFn = Callable[["Block", torch.Generator, torch.Tensor], torch.Tensor]


def gaussian_direction(block: Block, generator: torch.Generator, out: torch.Tensor) -> torch.Tensor:
    """z ~ N(0, I), the MeZO direction."""
    return out.normal_(generator=generator)


_WORKER = threading.local()  # marks the noise threads of every engine


def _mark_worker() -> None:
    _WORKER.marked = True


def default_workers() -> int:
    """Threads for adding noise: torch's intra-op thread count, at most 4 (more only contend for memory)."""
    return max(1, min(4, torch.get_num_threads()))


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
        direction: how a direction is drawn: a :class:`NoiseSource` or its name (``"gaussian"``, the default,
            or ``"rademacher"``), streamed in chunks; or a ``DirectionFn`` of a method that draws its own.
        deferred: record perturbations instead of writing them into the weights (see the module docstring).
        workers: threads that add noise to different blocks at once (default :func:`default_workers`).
    """

    def __init__(
        self,
        named_params: Iterable[tuple[str, torch.Tensor]],
        direction: DirectionFn | NoiseSource | str = "gaussian",
        *,
        deferred: bool = False,
        workers: int | None = None,
    ) -> None:
        self.blocks = [
            Block(i, name, p, decay=p.dim() >= 2) for i, (name, p) in enumerate(named_params)
        ]
        if isinstance(direction, str):
            direction = NOISES.get(direction)
        # A streamable distribution, or None when a method's DirectionFn draws whole blocks.
        self.source: NoiseSource | None = direction if isinstance(direction, NoiseSource) else None
        self.direction: DirectionFn | None = None if self.source is not None else direction
        self._generator = torch.Generator(device="cpu")
        self._scratch: torch.Tensor | None = None  # one block-sized buffer, made when whole blocks are drawn
        self._local = threading.local()  # per-thread chunk buffers
        self.workers = default_workers() if workers is None else workers
        self._pool: ThreadPoolExecutor | None = None
        self._closer: weakref.finalize | None = None
        # Deferred mode: block index -> {seed: coef} still to be added to theta for a forward pass.
        self.pending: dict[int, dict[int, float]] | None = {} if deferred else None
        # In-place mode: block index -> {seed: coef} written into the weights by ``perturb`` and not yet undone,
        # so a step that fails half-way can take its probes back out (``undo_perturbations``).
        self.applied: dict[int, dict[int, float]] = {}

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
        numel = block.param.numel()
        if self._scratch is None or self._scratch.numel() < numel:
            largest = max(b.param.numel() for b in self.blocks)
            self._scratch = torch.empty(largest, dtype=torch.float32)
        out = self._scratch[:numel].view(block.param.shape)
        if direction is None and self.source is not None:
            z = self.source.block_reader(mix_seed(seed, block.index), block).fill(out)
        else:
            self._generator.manual_seed(mix_seed(seed, block.index))
            z = (direction or self.direction)(block, self._generator, out)
        return z.to(block.param.device) if z.device != block.param.device else z

    def perturb(self, seed: int, scale: float, plan: StepPlan) -> None:
        """theta_b <- theta_b + scale * s_b * z_b for every block b in ``plan`` (recorded only, when deferred)."""
        if self.pending is None:
            self.apply_combinations([(self.blocks[b], [(seed, scale * s)], 1.0) for b, s, _ in plan])
        ledger = self.applied if self.pending is None else self.pending
        for b, block_scale, _ in plan:
            _add_to_ledger(ledger, b, seed, scale * block_scale)

    def undo_perturbations(self) -> None:
        """Take back every probe not yet undone: deferred terms are dropped; in-place ones are subtracted from
        the weights (to float rounding, as a normal restore). Called when a step fails half-way."""
        if self.pending is not None:
            self.pending.clear()
            return
        jobs = [(self.blocks[b], [(seed, -coef) for seed, coef in terms.items()], 1.0)
                for b, terms in self.applied.items()]
        self.applied.clear()
        self.apply_combinations(jobs)

    def _pending_terms(self, block: Block) -> dict[int, float] | None:
        """``{seed: coef}`` still to be added to ``block`` for a forward pass (None in place, or none pending)."""
        return self.pending.get(block.index) if self.pending else None

    def perturbed(self, block: Block) -> torch.Tensor | None:
        """theta + (pending terms) as a new tensor of the parameter's dtype, or None when nothing is pending.

        Arithmetic is float32 with one rounding, as for in-place updates.
        """
        terms = self._pending_terms(block)
        if not terms:
            return None
        param = block.param.detach()
        readers = self._chunk_readers(block, list(terms.items()))
        if readers is None:
            out = param.to(torch.float32, copy=True)
            self._add_noise_terms(out, block, list(terms.items()))
            return out.to(param.dtype)
        # A low-precision block is built chunk by chunk through a float32 scratch: the temporary is the block in
        # its own dtype (the 525 M values of a bf16 8B model's embedding: 1.05 GB, not 3.2 GB).
        out = torch.empty_like(param)
        self._combine_in_chunks(param, out, readers)
        return out

    def low_rank_terms(self, block: Block) -> list[tuple[float, torch.Tensor, torch.Tensor]] | None:
        """The pending terms of ``block`` as ``(coef, U, V)`` when every one of them is low-rank (z = U Vᵀ), else
        None (nothing pending, or a term that must be built whole)."""
        terms = self._pending_terms(block)
        if not terms or self.source is None:
            return None
        found = []
        for seed, coef in terms.items():
            factors = self.factors(seed, block)
            if factors is None:
                return None
            found.append((coef, *factors))
        return found

    def factors(self, seed: int, block: Block) -> tuple[torch.Tensor, torch.Tensor] | None:
        """``(U, V)`` when the z of ``seed`` on ``block`` is the low-rank U Vᵀ (LOZO's), else None."""
        if self.source is None:
            return None
        return self.source.block_reader(mix_seed(seed, block.index), block).factors(block.param.device)

    @torch.no_grad()  # also on worker threads, where the caller's no_grad mode does not reach
    def add_combination(
        self, block: Block, terms: Sequence[tuple[int, float]], *, decay: float = 1.0
    ) -> None:
        """theta <- decay * theta + sum_i coef_i * z(seed_i), regenerating each z.

        Arithmetic is float32; a low-precision parameter is rounded once, after all terms.
        """
        param = block.param
        on_worker = self._on_worker()
        readers = self._chunk_readers(block, terms)
        if readers is not None:  # no float32 copy of the block: a chunk at a time, in place
            self._combine_in_chunks(param, param, readers, decay=decay)
            return
        if param.dtype == torch.float32:
            target = param
        elif on_worker:  # the conversions below torch's parallel grain too (see SERIAL_SLICE)
            target = torch.empty(param.shape, dtype=torch.float32, device=param.device)
            serially(lambda a, b: target.view(-1)[a:b].copy_(param.view(-1)[a:b]), param.numel())
        else:
            target = param.float()
        if decay != 1.0:
            if on_worker:
                serially(lambda a, b: target.view(-1)[a:b].mul_(decay), param.numel())
            else:
                target.mul_(decay)
        self._add_noise_terms(target, block, terms)
        if target is not param:
            if on_worker:
                serially(lambda a, b: param.view(-1)[a:b].copy_(target.view(-1)[a:b]), param.numel())
            else:
                param.copy_(target)

    def _combine_in_chunks(self, source: torch.Tensor, out: torch.Tensor,
                           readers: Sequence[tuple[NoiseReader, float]], *, decay: float = 1.0) -> None:
        """``out = decay * source + sum coef z`` for low-precision contiguous tensors (``out`` may be ``source``),
        a chunk at a time through a float32 scratch: the same values as converting the whole block to float32,
        since each reader continues where it stopped, at the chunk boundaries the whole-block draw uses."""
        flat_out = out.view(-1)
        for start, stop, piece in self._combined_pieces(source, readers, decay=decay):
            self._elementwise(lambda a, b: flat_out[start + a:start + b].copy_(piece[a:b]), stop - start)

    def _combined_pieces(self, source: torch.Tensor, readers: Sequence[tuple[NoiseReader, float]], *,
                         decay: float = 1.0) -> Iterator[tuple[int, int, torch.Tensor]]:
        """``(start, stop, piece)``: ``decay * source + sum coef z`` over the flat range ``[start, stop)``, in float32,
        a ``CHUNK`` at a time in order. ``piece`` is a scratch that the next chunk overwrites."""
        flat_in = source.view(-1)
        buffer = self._buffer()
        on_worker = self._on_worker()
        scratch = torch.empty(CHUNK + 16, dtype=torch.float32, device=source.device)  # a last chunk joins one
        for start, stop in chunks(source.numel(), CHUNK):
            piece = scratch[: stop - start]
            self._elementwise(lambda a, b: piece[a:b].copy_(flat_in[start + a:start + b]), stop - start)
            if decay != 1.0:
                self._elementwise(lambda a, b: piece[a:b].mul_(decay), stop - start)
            for reader, coef in readers:
                reader.add_to(piece, coef, buffer, serial=on_worker)
            yield start, stop, piece

    def _elementwise(self, op: Callable[[int, int], object], size: int) -> None:
        if self._on_worker():  # a noise thread keeps every op below torch's parallel grain (see SERIAL_SLICE)
            serially(op, size)
        else:
            op(0, size)

    def perturbed_rows(self, block: Block, rows: int) -> Iterator[tuple[int, int, torch.Tensor]] | None:
        """``(first, last, W)``: rows ``[first, last)`` of ``theta + (pending terms)``, ``rows`` at a time in the
        parameter's dtype, or None when nothing is pending or the noise cannot be read by ranges.

        A layer whose output is a function of whole rows of its weight (a linear layer's output features, an
        embedding's tokens) is computed group by group from these, so no block-sized temporary is made (the LM
        head of an 8B model: 1.05 GB in bf16). The values are those of ``perturbed(block)``. ``W`` is a buffer that
        the next group overwrites.
        """
        terms = self._pending_terms(block)
        param = block.param.detach()
        readers = self._streamed_readers(block, list(terms.items())) if terms else None
        if readers is None:
            return None
        return self._row_groups(param, readers, rows)

    def _row_groups(self, param: torch.Tensor, readers: list[tuple[NoiseReader, float]],
                    rows: int) -> Iterator[tuple[int, int, torch.Tensor]]:
        width = param[0].numel()
        rows = min(rows, param.shape[0])
        group = torch.empty(rows * width, dtype=param.dtype, device=param.device)
        first, filled = 0, 0
        for start, stop, piece in self._combined_pieces(param, readers):
            used = 0
            while used < stop - start:  # a chunk may end inside a row: its rest starts the next group
                take = min(stop - start - used, group.numel() - filled)
                group[filled:filled + take].copy_(piece[used:used + take])
                filled, used = filled + take, used + take
                if filled == group.numel() or start + used == param.numel():
                    last = first + filled // width
                    yield first, last, group[:filled].view(last - first, *param.shape[1:])
                    first, filled = last, 0

    def apply_combinations(self, jobs: Sequence[tuple[Block, Sequence[tuple[int, float]], float]]) -> None:
        """``add_combination(block, terms, decay=decay)`` for each job, spread over the worker threads.

        Blocks are independent (each has its own seeds and weights), so the threads change only the speed.
        """
        jobs = self._add_small_blocks_together(jobs)
        # Only streamed noise is thread-safe (each reader owns its generator; whole-block draws share a buffer).
        streamed = self.source is not None and all(b.param.is_contiguous() for b, _, _ in jobs)
        if self.workers <= 1 or not streamed or not self.source.serial or len(jobs) < 2:
            for block, terms, decay in jobs:
                self.add_combination(block, terms, decay=decay)
            return
        if self._pool is None:
            # The initializer is a module function: a bound method would let the threads hold the engine, and
            # neither would ever be collected. The finalizer stops the threads when the engine goes.
            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="zotune-noise",
                                            initializer=_mark_worker)
            self._closer = weakref.finalize(self, self._pool.shutdown, wait=False)
        # Largest first, so the threads end together; the pool hands out jobs as threads free up.
        ordered = sorted(jobs, key=lambda job: -job[0].param.numel())
        futures = [self._pool.submit(self.add_combination, b, t, decay=d) for b, t, d in ordered]
        for future in futures:
            future.result()

    @torch.no_grad()
    def _add_small_blocks_together(
        self, jobs: Sequence[tuple[Block, Sequence[tuple[int, float]], float]]
    ) -> Sequence[tuple[Block, Sequence[tuple[int, float]], float]]:
        """Do the jobs of small float32 CPU blocks in one ``add_to_many`` call when the noise can (the
        counter-based streams, whose z depends on the seed alone), and return the others."""
        add_to_many = getattr(self.source, "add_to_many", None)
        if add_to_many is None or self._on_worker():
            return jobs
        small = [job for job in jobs if job[0].param.numel() < SMALL_BLOCK and job[0].param.dtype == torch.float32
                 and job[0].param.device.type == "cpu" and job[0].param.is_contiguous()]
        if len(small) < 2:
            return jobs
        items = []
        for block, terms, decay in small:  # in add_combination's order: the decay, then each term
            target = block.param.view(-1)
            if decay != 1.0:
                target.mul_(decay)
            items += [(target, mix_seed(seed, block.index), coef) for seed, coef in terms if coef != 0.0]
        if items:
            add_to_many(items)
        chosen = {id(job) for job in small}
        return [job for job in jobs if id(job) not in chosen]

    def close(self) -> None:
        """Stop the noise threads (waiting for any job in flight). The engine still works afterwards: it adds
        noise on the calling thread until it needs the threads again, which start anew."""
        pool, self._pool = self._pool, None
        if self._closer is not None:
            self._closer.detach()
            self._closer = None
        if pool is not None:
            pool.shutdown(wait=True)

    @staticmethod
    def _on_worker() -> bool:
        """Whether this is one of the engines' noise threads, which keep every op on their own thread."""
        return getattr(_WORKER, "marked", False)

    def _add_noise_terms(self, target: torch.Tensor, block: Block, terms: Sequence[tuple[int, float]]) -> None:
        """target += sum coef z(seed) for a float32 tensor shaped like the block, chunk by chunk when streamable."""
        if self.source is None or not target.is_contiguous():
            for seed, coef in terms:
                if coef != 0.0:
                    target.add_(self.noise(seed, block), alpha=coef)
            return
        buffer = self._buffer()
        for reader, coef in self._readers(block, terms):
            reader.add_to(target.view(-1), coef, buffer, serial=self._on_worker())

    def _readers(self, block: Block, terms: Sequence[tuple[int, float]]) -> list[tuple[NoiseReader, float]]:
        """``(reader, coef)`` of the engine's streamed distribution for each nonzero term of ``block``."""
        return [(self.source.block_reader(mix_seed(seed, block.index), block), coef)
                for seed, coef in terms if coef != 0.0]

    def _buffer(self) -> torch.Tensor:
        """This thread's chunk buffer for the noise readers."""
        buffer = getattr(self._local, "buffer", None)
        if buffer is None:
            buffer = self._local.buffer = torch.empty(CHUNK + 16, dtype=torch.float32)
        return buffer

    def _chunk_readers(self, block: Block,
                       terms: Sequence[tuple[int, float]]) -> list[tuple[NoiseReader, float]] | None:
        """The readers of ``terms`` when ``block`` is a low-precision tensor that ``_combine_in_chunks`` can build a
        range of elements at a time, else None: a float32 block needs no float32 copy."""
        return None if block.param.dtype == torch.float32 else self._streamed_readers(block, terms)

    def _streamed_readers(self, block: Block,
                          terms: Sequence[tuple[int, float]]) -> list[tuple[NoiseReader, float]] | None:
        """The readers of ``terms`` when ``block`` is contiguous and its z can be read a range of elements at a
        time, else None: a method's own DirectionFn or a low-rank z (added to the whole matrix at once) cannot."""
        if self.source is None or not block.param.is_contiguous():
            return None
        readers = self._readers(block, terms)
        return None if any(isinstance(r, LowRankReader) for r, _ in readers) else readers

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
                _add_to_ledger(self.applied, block.index, *restore)  # a later failure takes back the rest only
                restored = True
            acc.add_(z, alpha=coef)
        if not restored:
            self.add_combination(block, [restore])
            _add_to_ledger(self.applied, block.index, *restore)
        return acc


def _add_to_ledger(ledger: dict[int, dict[int, float]], block: int, seed: int, coef: float) -> None:
    """Note ``coef * z(seed)`` as added to block ``block``; terms that come back to 0 leave the ledger."""
    terms = ledger.setdefault(block, {})
    # +eps, -2 eps, +eps (and LDSD's +eps, -eps) cancel exactly in float64: scaling by 2 is exact.
    total = terms.get(seed, 0.0) + coef
    if total == 0.0:
        terms.pop(seed, None)
        if not terms:
            del ledger[block]
    else:
        terms[seed] = total
