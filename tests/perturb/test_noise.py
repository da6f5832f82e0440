"""Streamed noise: chunked draws equal whole draws, threads change nothing, and Rademacher directions are sound."""

import pytest
import torch

from zotune import ZOOptimizer
from zotune.errors import ConfigError
from zotune.perturb import PerturbationEngine, StepPlan, mix_seed
from zotune.perturb.noise import CHUNK, SERIAL_SLICE, GaussianNoise, RademacherNoise, chunks


def _buffer():
    return torch.empty(CHUNK + 16)


def test_chunks_cover_the_range_and_never_end_shorter_than_16():
    for numel in (1, 15, 16, CHUNK, CHUNK + 5, 3 * CHUNK + 17):
        ranges = chunks(numel, CHUNK)
        assert ranges[0][0] == 0 and ranges[-1][1] == numel
        assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
        assert len(ranges) == 1 or ranges[-1][1] - ranges[-1][0] >= 16


@pytest.mark.parametrize("numel", [7, CHUNK + 5, 2 * CHUNK + 100])
def test_gaussian_stream_read_in_chunks_equals_one_normal_draw(numel):
    target = torch.zeros(numel)
    GaussianNoise().reader(42).add_to(target, 0.5, _buffer())
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
            return torch.empty(before.shape).normal_(generator=torch.Generator().manual_seed(mix_seed(seed, index)))
        expected = before.clone().add_(z(9), alpha=1e-3)
        if index == 0:
            expected.mul_(0.5).add_(z(9), alpha=-2e-3).add_(z(10), alpha=0.25)
        assert torch.equal(param, expected), name


@pytest.mark.parametrize("numel", [SERIAL_SLICE - 1, SERIAL_SLICE + 7, CHUNK + 5])
def test_adding_in_serial_slices_equals_one_add(numel):
    start = torch.randn(numel, generator=torch.Generator().manual_seed(1))
    whole, sliced = start.clone(), start.clone()
    GaussianNoise().reader(42).add_to(whole, 0.3, _buffer())
    GaussianNoise().reader(42).add_to(sliced, 0.3, _buffer(), serial=True)
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


@pytest.mark.parametrize("noise", ["gaussian", "rademacher"])
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


def test_rademacher_fused_kernel_and_chunked_reads_equal_the_eager_ops():
    n = CHUNK + 40
    fused, eager = torch.zeros(n), torch.zeros(n)
    RademacherNoise(fused=True).reader(77).add_to(fused, 0.3, _buffer())
    RademacherNoise(fused=False).reader(77).add_to(eager, 0.3, _buffer())
    assert torch.equal(fused, eager)
    reader = RademacherNoise().reader(77)
    halves = torch.cat([reader.fill(torch.empty(1000)), reader.fill(torch.empty(n - 1000))])
    assert torch.equal(halves * 0.3, fused)


def test_rademacher_second_moment_is_the_identity():
    dim, seeds = 12, 3000
    zs = torch.stack([RademacherNoise().reader(mix_seed(s, 0)).fill(torch.empty(dim)) for s in range(seeds)])
    second = zs.T @ zs / seeds
    assert torch.equal(second.diagonal(), torch.ones(dim))  # z_i^2 = 1 exactly
    off = second - torch.diag(second.diagonal())
    assert off.abs().max() < 5 / seeds**0.5


def test_the_noise_option_is_validated():
    model = torch.nn.Linear(3, 3)
    with pytest.raises(ConfigError, match="Invalid noise"):
        ZOOptimizer(model, noise="uniform")
    with pytest.raises(ConfigError, match="draws its own directions"):
        ZOOptimizer(model, method="ldsd", noise="rademacher")
    assert ZOOptimizer(model, noise="rademacher").hparams["noise"] == "rademacher"
