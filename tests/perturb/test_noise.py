"""Streamed noise: chunked draws equal whole draws, threads change nothing, and the counter-based Gaussians and
Rademacher directions are sound."""

import shutil
from pathlib import Path

import pytest
import torch

import zotune.perturb.normal
from zotune import ZOOptimizer
from zotune.errors import ConfigError
from zotune.perturb import PerturbationEngine, StepPlan, mix_seed
from zotune.perturb.noise import (
    CHUNK,
    SERIAL_SLICE,
    SMALL_BLOCK,
    Gaussian16Noise,
    GaussianNoise,
    RademacherNoise,
    TorchGaussianNoise,
    chunks,
)


def _buffer():
    return torch.empty(CHUNK + 16)


def test_chunks_cover_the_range_and_never_end_shorter_than_16():
    for numel in (1, 15, 16, CHUNK, CHUNK + 5, 3 * CHUNK + 17):
        ranges = chunks(numel, CHUNK)
        assert ranges[0][0] == 0 and ranges[-1][1] == numel
        assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
        assert len(ranges) == 1 or ranges[-1][1] - ranges[-1][0] >= 16


@pytest.mark.parametrize("numel", [7, CHUNK + 5, 2 * CHUNK + 100])
def test_torch_gaussian_stream_read_in_chunks_equals_one_normal_draw(numel):
    target = torch.zeros(numel)
    TorchGaussianNoise().reader(42).add_to(target, 0.5, _buffer())
    whole = torch.empty(numel).normal_(generator=torch.Generator().manual_seed(42))
    assert torch.equal(target, torch.zeros(numel).add_(whole, alpha=0.5))


def test_engine_perturbation_equals_the_straightforward_arithmetic():
    # One block larger than a chunk, so the streamed path really splits it.
    torch.manual_seed(0)
    params = [("big", torch.randn(CHUNK + 3)), ("w", torch.randn(6, 4)), ("b", torch.randn(4))]
    original = [p.clone() for _, p in params]
    engine = PerturbationEngine(params, workers=3)
    engine.perturb(9, 1e-3, StepPlan.full(3))
    engine.add_combination(engine.blocks[0], [(9, -2e-3), (10, 0.25)], decay=0.5)
    for index, ((name, param), before) in enumerate(zip(params, original)):
        def z(seed):
            return GaussianNoise(fused=False).reader(mix_seed(seed, index)).fill(torch.empty(before.shape))
        expected = before + z(9) * 1e-3
        if index == 0:
            expected = expected * 0.5 + z(9) * -2e-3 + z(10) * 0.25
        assert torch.equal(param, expected), name


@pytest.mark.parametrize("numel", [SERIAL_SLICE - 1, SERIAL_SLICE + 7, CHUNK + 5])
def test_adding_in_serial_slices_equals_one_add(numel):
    start = torch.randn(numel, generator=torch.Generator().manual_seed(1))
    whole, sliced = start.clone(), start.clone()
    TorchGaussianNoise().reader(42).add_to(whole, 0.3, _buffer())
    TorchGaussianNoise().reader(42).add_to(sliced, 0.3, _buffer(), serial=True)
    assert torch.equal(whole, sliced)


def test_worker_threads_round_low_precision_weights_as_the_calling_thread_does():
    def run(workers):
        params = [(f"p{i}", torch.randn(SERIAL_SLICE + 40 * i, generator=torch.Generator().manual_seed(i))
                   .to(torch.bfloat16)) for i in range(3)]
        engine = PerturbationEngine(params, workers=workers)
        engine.apply_combinations([(block, [(5, 1e-2), (6, -3e-3)], 0.9) for block in engine.blocks])
        return [p for _, p in params]

    assert all(torch.equal(a, b) for a, b in zip(run(1), run(3)))


def _mlp_run(workers, noise="gaussian"):
    torch.manual_seed(0)
    model = torch.nn.Sequential(*[torch.nn.Linear(8, 8) for _ in range(6)])
    data = torch.randn(32, 8)
    opt = ZOOptimizer(model, lr=1e-2, eps=1e-3, seed=3, noise=noise)
    opt.engine.workers = workers
    for _ in range(5):
        opt.step(lambda: model(data).pow(2).mean())
    return [p.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize("noise", ["gaussian", "gaussian16", "rademacher", "torch-gaussian"])
def test_worker_threads_do_not_change_a_training_run(noise):
    for serial, threaded in zip(_mlp_run(1, noise), _mlp_run(4, noise)):
        assert torch.equal(serial, threaded)


def test_rademacher_signs_are_balanced_and_uncorrelated():
    n = 1 << 20
    a = RademacherNoise().reader(mix_seed(1, 0)).fill(torch.empty(n))
    b = RademacherNoise().reader(mix_seed(2, 0)).fill(torch.empty(n))
    c = RademacherNoise().reader(mix_seed(1, 1)).fill(torch.empty(n))
    assert set(a.unique().tolist()) == {-1.0, 1.0}
    bound = 5 / n**0.5  # five standard deviations of a mean of n independent signs
    assert abs(a.mean()) < bound
    assert abs((a[1:] * a[:-1]).mean()) < bound  # neighbours
    assert abs((a * b).mean()) < bound  # another step's seed
    assert abs((a * c).mean()) < bound  # another block


@pytest.mark.parametrize("source", [RademacherNoise, GaussianNoise, Gaussian16Noise])
def test_fused_kernels_and_chunked_reads_equal_the_eager_ops(source):
    n = CHUNK + 40
    fused, eager = torch.zeros(n), torch.zeros(n)
    source(fused=True).reader(77).add_to(fused, 0.3, _buffer())
    source(fused=False).reader(77).add_to(eager, 0.3, _buffer())
    assert torch.equal(fused, eager)
    reader = source().reader(77)
    halves = torch.cat([reader.fill(torch.empty(1000)), reader.fill(torch.empty(n - 1000))])
    assert torch.equal(halves * 0.3, fused)
    assert torch.equal(halves, source(fused=False).reader(77).fill(torch.empty(n)))


@pytest.mark.skipif(not (shutil.which("c++") or shutil.which("g++")), reason="no C++ compiler: the eager ops run")
@pytest.mark.parametrize("source", [RademacherNoise, GaussianNoise, Gaussian16Noise])
def test_kernels_compile_with_their_options_where_a_compiler_is_there(source):
    # A compile option torch stopped accepting would fall back to the eager ops: the same values, slower. This
    # catches that: the kernel is recompiled here and must come back compiled.
    import zotune.perturb.noise as noise

    for fn in (source.fill_kernel, source.add_kernel):
        noise._kernels.pop(fn.__name__, None)
        assert noise._kernel(fn, source.tables) is not fn


@pytest.mark.parametrize("source", [RademacherNoise, GaussianNoise, Gaussian16Noise])
def test_adding_to_many_small_blocks_at_once_equals_adding_to_each(source):
    sizes, seeds = [1, 7, 16, 300, SMALL_BLOCK - 1], [3, 2**40 + 5, 3, 2**63 - 1, 11]
    one_by_one = [torch.randn(n, generator=torch.Generator().manual_seed(n)) for n in sizes]
    together = [t.clone() for t in one_by_one]
    items = [(t, seed, 0.1 * (i + 1)) for i, (t, seed) in enumerate(zip(together, seeds))]
    items.append((together[1], 99, -2.5))  # a second term on a block: added after its first, as add_to would
    source().add_to_many(items)
    for i, (target, seed) in enumerate(zip(one_by_one, seeds)):
        source().reader(seed).add_to(target, 0.1 * (i + 1), _buffer())
    source().reader(99).add_to(one_by_one[1], -2.5, _buffer())
    assert all(torch.equal(a, b) for a, b in zip(one_by_one, together))


def test_the_engine_adds_small_blocks_together(monkeypatch):
    calls = []
    real = GaussianNoise.add_to_many
    monkeypatch.setattr(GaussianNoise, "add_to_many", lambda self, items: (calls.append(len(items)),
                                                                            real(self, items)))
    params = [(f"p{i}", torch.randn(5)) for i in range(4)] + [("big", torch.randn(SMALL_BLOCK))]
    PerturbationEngine(params).perturb(1, 1e-3, StepPlan.full(5))
    assert calls == [4]  # the four small blocks in one call, the big one on its own


def test_rademacher_second_moment_is_the_identity():
    dim, seeds = 12, 3000
    zs = torch.stack([RademacherNoise().reader(mix_seed(s, 0)).fill(torch.empty(dim)) for s in range(seeds)])
    second = zs.T @ zs / seeds
    assert torch.equal(second.diagonal(), torch.ones(dim))  # z_i^2 = 1 exactly
    off = second - torch.diag(second.diagonal())
    assert off.abs().max() < 5 / seeds**0.5


@pytest.mark.parametrize("source", [GaussianNoise, Gaussian16Noise])
def test_gaussian_values_are_standard_normal_and_independent(source):
    n = 1 << 21
    a = source().reader(mix_seed(1, 0)).fill(torch.empty(n)).double()
    b = source().reader(mix_seed(2, 0)).fill(torch.empty(n)).double()
    c = source().reader(mix_seed(1, 1)).fill(torch.empty(n)).double()
    sd = n ** -0.5
    assert abs(a.mean()) < 5 * sd
    assert abs(a.var() - 1) < 5 * 2**0.5 * sd  # the variance of a mean of z^2 is 2 / n
    assert abs((a[1:] * a[:-1]).mean()) < 5 * sd  # neighbours
    assert abs((a * b).mean()) < 5 * sd  # another step's seed
    assert abs((a * c).mean()) < 5 * sd  # another block
    # Kolmogorov-Smirnov against N(0, 1): the largest gap between the empirical and the normal CDF, below its
    # 0.1% critical value (1.95 / sqrt(n)); a variance 1% off would give about twice that.
    cdf = torch.special.ndtr(a.sort().values)
    ranks = torch.arange(1, n + 1, dtype=torch.float64) / n
    assert torch.maximum(ranks - cdf, cdf - (ranks - 1 / n)).max() < 1.95 * sd
    for k in (3.0, 4.0):  # the tails (AS 241 computes them apart from the centre): counts within 6 sigma
        p = 2 * float(torch.special.ndtr(torch.tensor(-k, dtype=torch.float64)))
        assert abs(int((a.abs() > k).sum()) - n * p) < 6 * (n * p) ** 0.5


def test_gaussian_values_reach_the_tails_of_32_bits():
    from zotune.perturb.normal import standard_normal, upper_quantile

    # The smallest v (all magnitude bits 0) gives the largest |z| the stream can draw, -Φ⁻¹(2^-32) = 6.23025;
    # the top bit alone flips its sign.
    extremes = standard_normal(torch.tensor([0, -(1 << 31)], dtype=torch.int32))
    assert extremes[0] == pytest.approx(6.23025, abs=1e-5) and extremes[1] == -extremes[0]
    v = torch.tensor([2.0**-32, 1e-6, 0.01, 0.07, 0.075, 0.08, 0.3, 0.5 - 2.0**-24], dtype=torch.float64)
    exact = -torch.special.ndtri(v)
    assert torch.allclose(upper_quantile(v.float()).double(), exact, rtol=1e-6, atol=3e-6)


def test_the_16_bit_gaussian_is_its_table_of_bin_means():
    from safetensors.torch import load_file

    from zotune.perturb.normal import GAUSSIAN16_BINS, gaussian16_magnitudes, standard_normal16

    # The shipped table is the float64 construction rounded to float32 (within an ulp: the platform's ndtri and exp
    # may differ in a last bit, which is why it ships as a file).
    shipped = load_file(str(Path(zotune.perturb.normal.__file__).with_name("gaussian16.safetensors")))["magnitudes"]
    exact = gaussian16_magnitudes()
    assert shipped.dtype == torch.float32 and shipped.shape == (GAUSSIAN16_BINS,)
    assert ((shipped.double() - exact).abs() <= exact * 2.0**-24).all()
    # Each value lies in its bin of |Z| (equal probability 2^-15 each), increasing, and E[z^2] = 1.
    edges = torch.special.ndtri(0.5 + torch.arange(GAUSSIAN16_BINS + 1, dtype=torch.float64) / 2**16)
    scale = exact[0] / (-(2**16) * torch.expm1(-0.5 * edges[1] ** 2) / (2 * torch.pi) ** 0.5)  # the common factor
    assert 1 < scale < 1 + 1e-6
    assert ((exact / scale >= edges[:-1]) & (exact / scale <= edges[1:])).all() and (exact.diff() > 0).all()
    assert exact.square().mean() == pytest.approx(1.0, abs=1e-15)
    assert float(shipped.max()) == pytest.approx(4.3875, abs=1e-4)
    # Bit 31 is the sign and bits 16-30 the bin; the low 16 bits are not read.
    bits = torch.tensor([0, 0xFFFF, 0x7FFF0000, -(1 << 31), -1], dtype=torch.int32)
    z = standard_normal16(bits)
    assert z.tolist() == [shipped[0], shipped[0], shipped[-1], -shipped[0], -shipped[-1]]


@pytest.mark.parametrize("source", [GaussianNoise, Gaussian16Noise])
def test_gaussian_second_moment_is_the_identity(source):
    dim, seeds = 12, 3000
    zs = torch.stack([source().reader(mix_seed(s, 0)).fill(torch.empty(dim)) for s in range(seeds)])
    second = (zs.T @ zs / seeds).double()
    assert (second.diagonal() - 1).abs().max() < 6 * (2 / seeds) ** 0.5
    off = second - torch.diag(second.diagonal())
    assert off.abs().max() < 6 / seeds**0.5


def test_the_noise_option_is_validated():
    model = torch.nn.Linear(3, 3)
    with pytest.raises(ConfigError, match="Invalid noise"):
        ZOOptimizer(model, noise="uniform")
    with pytest.raises(ConfigError, match="draws its own directions"):
        ZOOptimizer(model, method="ldsd", noise="rademacher")
    # The default before zotune 0.3.0 is no choice either: seed logs and states of that time name it.
    assert ZOOptimizer(model, method="ldsd", noise="gaussian").engine.source.name != "gaussian"
    assert ZOOptimizer(model, noise="rademacher").settings["noise"] == "rademacher"
