"""Direction distributions as seeded streams: a block's noise is read chunk by chunk, never stored whole.

A :class:`NoiseSource` turns a seed into a :class:`NoiseReader` that fills consecutive chunks of one block's z.
Reading a block in chunks gives exactly the values of reading it in one go, so the engine can add noise to a
weight tensor through a small scratch buffer (memory stays at inference level) and several blocks can be
perturbed at once on worker threads (each reader owns its generator).

- :class:`GaussianNoise` (``"gaussian"``, MeZO's distribution, the default before zotune 0.3.0): z ~ N(0, I), each
  value the inverse normal CDF of a counter-based hash of (seed, i) (``normal.py``). The kernel is fused by ``torch.compile`` when a
  C++ compiler is there and runs on every core; plain torch ops give the same values bit for bit otherwise.
- :class:`Gaussian16Noise` (``"gaussian16"``, the default): a Gaussian of 65,536 equally likely values, from 16 bits
  of the same hash and a table (``normal.py``): E[z z^T] = I, its CDF within 1.5e-5 of the normal one,
  |z| <= 4.39, at more than twice the speed of ``gaussian``'s transform.
- :class:`RademacherNoise` (``"rademacher"``): z_i = ±1, the top bit of the same hash. E[z z^T] = I, so SPSA with it
  is as unbiased as with Gaussians, and it costs a few integer operations per weight.
- :class:`TorchGaussianNoise` (``"torch-gaussian"``): z ~ N(0, I) from torch's CPU generator (``normal_``), which
  draws one stream on one thread (about 250 M values a second a core). It was ``gaussian`` until seed logs
  reached version 2; runs made before then replay and resume with it (``legacy_noise``). ``normal_`` consumes
  its generator in groups of 16, so chunks of a multiple of 16 elements (the last one at least 16 long)
  reproduce the whole-tensor draw bit for bit; the engine's chunking keeps to that.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import torch

from zotune.errors import ZotuneWarning
from zotune.perturb.normal import GAUSSIAN16_TABLE, standard_normal, standard_normal16
from zotune.registry import Registry

__all__ = ["CHUNK", "SERIAL_SLICE", "SMALL_BLOCK", "chunks", "serially", "NoiseSource", "NoiseReader",
           "LowRankReader", "FactoredNoise", "as_matrix", "GaussianNoise",
           "Gaussian16Noise", "RademacherNoise", "TorchGaussianNoise", "NOISES"]

# normal_ consumes its generator in groups of 16 values: chunk boundaries on multiples of 16 keep streams exact.
CHUNK = 1 << 20
# torch runs an elementwise op of fewer than 32,768 elements (its parallel grain) on the calling thread alone.
# The engine's worker threads add noise in slices below it: an op above it would start an OpenMP team of its own
# on each worker, and with more OpenMP threads than cores libgomp stops spinning between parallel regions, which
# made every later forward pass 25-30% slower (docs/performance.md). The largest multiple of 32 below the grain
# (a last slice of fewer than 16 joins the one before it and stays below it), so vectorised loops see the same
# element groups as over the whole chunk.
SERIAL_SLICE = (1 << 15) - 32


def chunks(numel: int, size: int) -> list[tuple[int, int]]:
    """``[start, stop)`` ranges of ``size`` elements; a last range shorter than 16 joins the one before it."""
    bounds = list(range(0, numel, size)) + [numel]
    if len(bounds) > 2 and bounds[-1] - bounds[-2] < 16:
        del bounds[-2]
    return list(zip(bounds[:-1], bounds[1:]))


def serially(op: Callable[[int, int], object], numel: int) -> None:
    """``op(start, stop)`` over ``[0, numel)`` in slices of ``SERIAL_SLICE``: elementwise ops that run on the
    calling thread alone (see ``SERIAL_SLICE``)."""
    for start, stop in chunks(numel, SERIAL_SLICE):
        op(start, stop)


class NoiseReader:
    """Reads one block's z in order: each call continues where the last one stopped."""

    def factors(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor] | None:
        """``(U, V)`` when this block's z is the low-rank U Vᵀ (LOZO's), else None. Deferred perturbation then adds
        the effect of ``c U Vᵀ`` to a linear or embedding layer's output instead of building θ + c z."""
        return None

    def fill(self, out: torch.Tensor) -> torch.Tensor:
        """Fill ``out`` (float32) with the next ``out.numel()`` values and return it."""
        raise NotImplementedError

    def add_to(self, target: torch.Tensor, coef: float, buffer: torch.Tensor, *, serial: bool = False) -> None:
        """``target += coef * z`` for a flat float32 ``target``, drawing z chunk by chunk into ``buffer``.

        Args:
            buffer: float32 CPU scratch of ``CHUNK + 16`` elements (a last chunk shorter than 16 joins the one
                before it, as ``normal_`` needs).
            serial: add on the calling thread only, in slices of ``SERIAL_SLICE`` (the engine's worker threads).
        """
        for start, stop in chunks(target.numel(), buffer.numel() - 16):
            piece = target[start:stop]
            z = self.fill(buffer[: stop - start])
            z = z if z.device == piece.device else z.to(piece.device)
            if serial:
                serially(lambda a, b, piece=piece, z=z: piece[a:b].add_(z[a:b], alpha=coef), stop - start)
            else:
                piece.add_(z, alpha=coef)


class NoiseSource:
    """A direction distribution readable as a stream (see the module docstring).

    Attributes:
        serial: whether one stream is drawn on one thread (torch's ``normal_``), so that the engine gains by
            drawing several blocks at once; False for kernels that already use every thread.
    """

    name = ""
    serial = True

    def reader(self, seed: int) -> NoiseReader:
        raise NotImplementedError

    def block_reader(self, seed: int, block) -> NoiseReader:
        """The stream of ``block``'s z for its (already mixed) ``seed``. Distributions that are the same for
        every block read by seed alone; one whose z depends on the block (LDSD's learned mean) overrides this."""
        return self.reader(seed)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class TorchGaussianNoise(NoiseSource):
    """z ~ N(0, I) from ``torch.Generator(seed)``: the stream of ``gaussian`` before seed log version 2."""

    name = "torch-gaussian"

    def reader(self, seed: int) -> NoiseReader:
        return _TorchGaussianReader(seed)


class _TorchGaussianReader(NoiseReader):
    def __init__(self, seed: int) -> None:
        self.generator = torch.Generator(device="cpu").manual_seed(seed)

    def fill(self, out: torch.Tensor) -> torch.Tensor:
        return out.normal_(generator=self.generator)


_MASK32 = 0xFFFFFFFF


def as_matrix(shape: torch.Size) -> tuple[int, int] | None:
    """(m, n) of a block perturbed in low rank: a tensor of 2 or more dims, as (shape[0], the rest); else None."""
    if len(shape) < 2:
        return None
    cols = 1
    for size in shape[1:]:
        cols *= size
    return shape[0], cols


class LowRankReader(NoiseReader):
    """A matrix block's z = U Vᵀ, given by ``factors`` (LOZO's, ZO-Muon's). Adding ``c z`` to the matrix is one
    ``addmm_`` pass over it (r (m + n) random values, no m x n temporary); only ``fill`` (the elementwise update
    rules, which need the block's estimate as a tensor) forms U Vᵀ.

    Args:
        shape: the block as a matrix (``as_matrix``).
    """

    def __init__(self, shape: tuple[int, int]) -> None:
        self.shape = shape

    def factors(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def fill(self, out: torch.Tensor) -> torch.Tensor:
        u, v = self.factors(out.device)
        torch.mm(u, v.T, out=out.view(self.shape))
        return out

    def add_to(self, target: torch.Tensor, coef: float, buffer: torch.Tensor, *, serial: bool = False) -> None:
        u, v = self.factors(target.device)
        target.view(self.shape).addmm_(u, v.T, alpha=coef)


class FactoredNoise(NoiseSource):
    """Directions that are low-rank on matrix blocks (``matrix_reader``, a ``LowRankReader``) and drawn from another
    distribution, ``vectors``, on the rest (norm scales, biases): LOZO's and ZO-Muon's."""

    serial = False  # addmm_ already uses every thread

    def __init__(self, vectors: NoiseSource) -> None:
        self.vectors = vectors

    def reader(self, seed: int) -> NoiseReader:
        return self.vectors.reader(seed)

    def block_reader(self, seed: int, block) -> NoiseReader:
        shape = as_matrix(block.param.shape)
        return self.vectors.reader(seed) if shape is None else self.matrix_reader(seed, block, shape)

    def matrix_reader(self, seed: int, block, shape: tuple[int, int]) -> LowRankReader:
        raise NotImplementedError


def _to_int32(value: int) -> int:
    """The two's-complement int32 holding the 32-bit pattern ``value``."""
    value &= _MASK32
    return value - (1 << 32) if value >= 1 << 31 else value


def _hash32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer hash (two xorshift-multiply rounds; C. Wellons' 'hash prospector' constants).

    int32 tensors hold the uint32 bit patterns: products wrap modulo 2^32 as unsigned ones do, and each right
    shift is masked to make it logical.
    """
    x = x ^ ((x >> 16) & 0xFFFF)
    x = x * 0x21F0AAAD
    x = x ^ ((x >> 15) & 0x1FFFF)
    x = x * 0x735A2D97
    return x ^ ((x >> 15) & 0x1FFFF)


def _stream_bits(counter: torch.Tensor, key0: torch.Tensor, key1: torch.Tensor) -> torch.Tensor:
    """32 random bits (int32) for each int32 ``counter`` of the stream keyed ``(key0, key1)`` (scalars, or one key
    per counter)."""
    return _hash32(_hash32(counter ^ key0) ^ key1)


def _bits(numel: int, keys: torch.Tensor, start: torch.Tensor) -> torch.Tensor:
    """32 random bits (int32) for each of the counters ``start, ..., start + numel - 1`` of the stream ``keys``."""
    counter = torch.arange(numel, dtype=torch.int32, device=keys.device) + start
    return _stream_bits(counter, keys[0], keys[1])


def _sign_of_bits(bits: torch.Tensor) -> torch.Tensor:
    # The top bit decides: an arithmetic shift gives -1 or 0, and | 1 makes it -1 or +1.
    return ((bits >> 31) | 1).to(torch.float32)


def _kernels_of(name: str, values_of_bits: Callable) -> tuple[Callable, Callable]:
    """The two kernels of the distribution whose element value is ``values_of_bits(32 random bits)``:

    - ``fill(out, keys, start)`` fills flat float32 ``out`` with the values of elements ``start, start+1, ...`` of
      the stream ``keys`` (int32 ``[k0, k1]``; ``start`` an int32 scalar tensor, the counter of ``out[0]``);
    - ``add(target, keys, start, coef)`` does ``target += coef * z`` for flat float32 ``target``, the same z.
    """
    def fill(out: torch.Tensor, keys: torch.Tensor, start: torch.Tensor) -> torch.Tensor:
        return out.copy_(values_of_bits(_bits(out.numel(), keys, start)))

    def add(target: torch.Tensor, keys: torch.Tensor, start: torch.Tensor, coef: torch.Tensor) -> torch.Tensor:
        return target.add_(values_of_bits(_bits(target.numel(), keys, start)) * coef)

    # The names key the compiled kernels (``_kernel``).
    fill.__name__, add.__name__ = f"{name}_fill", f"{name}_add"
    return fill, add


_kernels: dict[str, Callable] = {}


def _kernel(fn: Callable, tables: Sequence[torch.Tensor] = ()) -> Callable:
    """``fn`` fused by torch.compile (one pass over memory, no temporaries), else ``fn`` itself.

    The first call compiles, then checks the fused kernel against the eager ops over a million values (a compiler
    that fused a multiply and an add into one rounding would show there). It compiles on a chunk-sized input:
    inductor sizes its threading for the shapes it first sees, and a small one gives a serial kernel.

    ``tables`` are constant tensors ``fn`` reads by index (gaussian16's magnitudes): they are compiled at their
    size, and the fused kernel does not check each index against it. Every index the kernels make is masked
    bits, in range by construction, and on the 2-core AVX2 CPU measured the checked reads cost the gaussian16
    draw 30% of its speed (docs/performance.md).
    """
    if fn.__name__ not in _kernels:
        try:
            import torch._dynamo  # imported by torch.compile anyway; not at startup (about a second)

            for table in tables:
                torch._dynamo.mark_static(table)
            compiled = torch.compile(fn, dynamic=True, options={"assert_indirect_indexing": False})
            keys = torch.tensor([1, 2], dtype=torch.int32)
            start = torch.tensor(5, dtype=torch.int32)
            extra = (torch.tensor(0.5),) if fn.__name__.endswith("_add") else ()
            fused = compiled(torch.zeros(1 << 20), keys, start, *extra)
            if not torch.equal(fused, fn(torch.zeros(1 << 20), keys, start, *extra)):
                raise RuntimeError("the compiled kernel disagrees with the eager ops")
            _kernels[fn.__name__] = compiled
        except Exception as exc:  # no C++ compiler, an unsupported platform: eager ops give the same values
            warnings.warn(f"Counter-based noise runs unfused ({type(exc).__name__}: {exc}); it is slower, not "
                          "different", ZotuneWarning, stacklevel=4)
            _kernels[fn.__name__] = fn
    return _kernels[fn.__name__]


class _CounterNoise(NoiseSource):
    """A distribution whose i-th value is a function of a hash of (seed, i): any chunk is drawn on its own, by
    one kernel that uses every core (hence not ``serial``).

    Args:
        fused: use the torch.compile'd kernels (default); False runs the same arithmetic as eager ops.
    """

    serial = False
    name: str
    values_of_bits: Callable  # the value each element's 32 random bits stand for
    tables: tuple[torch.Tensor, ...] = ()  # the constants values_of_bits reads by index
    fill_kernel: Callable  # built from values_of_bits for each distribution (``_kernels_of``)
    add_kernel: Callable

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        fill, add = _kernels_of(cls.name, cls.values_of_bits)
        cls.fill_kernel, cls.add_kernel = staticmethod(fill), staticmethod(add)

    def __init__(self, fused: bool = True) -> None:
        self.fused = fused

    def reader(self, seed: int) -> NoiseReader:
        return _CounterReader(seed, self)

    def add_to_many(self, items: Sequence[tuple[torch.Tensor, int, float]]) -> None:
        """``target += coef * z(seed)`` for each ``(target, seed, coef)`` in order (flat float32 CPU targets of
        fewer than ``SMALL_BLOCK`` elements each), the values of ``reader(seed).add_to`` bit for bit.

        The same elementwise arithmetic runs once over all of them, each element with its own stream's key and
        counter: for many small blocks (norm scales, a tiny model's tensors) the time of the eager ops is their
        per-call cost, about 70 calls a block, not the arithmetic.
        """
        sizes = torch.tensor([target.numel() for target, _, _ in items])
        keys = torch.tensor([[_to_int32(seed), _to_int32(seed >> 32)] for _, seed, _ in items],
                            dtype=torch.int32).repeat_interleave(sizes, dim=0)
        firsts = (torch.cumsum(sizes, 0) - sizes).to(torch.int32).repeat_interleave(sizes)
        counter = torch.arange(int(sizes.sum()), dtype=torch.int32) - firsts  # each target's elements from 0
        coefs = torch.tensor([coef for _, _, coef in items], dtype=torch.float32).repeat_interleave(sizes)
        scaled = type(self).values_of_bits(_stream_bits(counter, keys[:, 0], keys[:, 1])) * coefs
        for (target, _, _), piece in zip(items, scaled.split(sizes.tolist())):
            target.add_(piece)


class _CounterReader(NoiseReader):
    def __init__(self, seed: int, source: _CounterNoise) -> None:
        self.keys = torch.tensor([_to_int32(seed), _to_int32(seed >> 32)], dtype=torch.int32)
        self.source = source
        self.position = 0

    def _advance(self, numel: int) -> torch.Tensor:
        if self.position + numel >= 1 << 31:
            raise ValueError(f"{self.source.name} noise supports blocks of fewer than 2^31 elements")
        start = torch.tensor(self.position, dtype=torch.int32)
        self.position += numel
        return start

    def _run(self, fn: Callable, numel: int) -> Callable:
        # The eager ops give the same values; below SMALL_BLOCK elements they cost less than starting the
        # compiler in a process that has no larger block (a tiny model).
        return _kernel(fn, self.source.tables) if self.source.fused and numel >= SMALL_BLOCK else fn

    def fill(self, out: torch.Tensor) -> torch.Tensor:
        self._run(type(self.source).fill_kernel, out.numel())(out.view(-1), self.keys, self._advance(out.numel()))
        return out

    def add_to(self, target: torch.Tensor, coef: float, buffer: torch.Tensor, *, serial: bool = False) -> None:
        if target.device.type != "cpu":
            return super().add_to(target, coef, buffer, serial=serial)
        self._run(type(self.source).add_kernel, target.numel())(target.view(-1), self.keys,
                                                                 self._advance(target.numel()), torch.tensor(coef))


# Blocks under this many elements are drawn by the eager ops, never compiled, and the engine adds the noise of
# several at once (``add_to_many``).
SMALL_BLOCK = 1 << 14


class GaussianNoise(_CounterNoise):
    """z ~ N(0, I): the inverse normal CDF of a counter-based hash of (seed, i) (``normal.py``)."""

    name = "gaussian"
    values_of_bits = staticmethod(standard_normal)


class Gaussian16Noise(_CounterNoise):
    """z from 16 bits of a counter-based hash of (seed, i): a sign and one of 2^15 magnitudes (``normal.py``)."""

    name = "gaussian16"
    values_of_bits = staticmethod(standard_normal16)
    tables = (GAUSSIAN16_TABLE,)


class RademacherNoise(_CounterNoise):
    """z_i = ±1 with probability 1/2 each, the top bit of a counter-based hash of (seed, i)."""

    name = "rademacher"
    values_of_bits = staticmethod(_sign_of_bits)


# The distributions of z that ``--noise`` names.
NOISES: Registry[NoiseSource] = Registry("direction distribution")
for _source in (GaussianNoise(), Gaussian16Noise(), RademacherNoise(), TorchGaussianNoise()):
    NOISES.register(_source.name, _source)
