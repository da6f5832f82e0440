import pytest
import torch

from zotune.perturb import PerturbationEngine, StepPlan, mix_seed
from zotune.perturb.noise import CHUNK


def _engine(dtype=torch.float32):
    torch.manual_seed(0)
    params = [("a.weight", torch.randn(7, 5, dtype=dtype)), ("a.bias", torch.randn(5, dtype=dtype)),
              ("b.weight", torch.randn(3, 4, 2, dtype=dtype))]
    return PerturbationEngine(params), params


def test_mix_seed_separates_nearby_inputs():
    seeds = {mix_seed(s, b) for s in range(50) for b in range(50)}
    assert len(seeds) == 2500
    assert all(0 <= s < 2**63 for s in seeds)
    assert mix_seed(1, 2) != mix_seed(2, 1)


def test_noise_is_reproducible_per_seed_and_block():
    engine, _ = _engine()
    first = engine.noise(123, engine.blocks[2]).clone()
    engine.noise(999, engine.blocks[0])  # other draws in between must not matter
    assert torch.equal(engine.noise(123, engine.blocks[2]), first)
    assert not torch.equal(engine.noise(124, engine.blocks[2]), first)


def test_noise_of_a_block_does_not_depend_on_the_other_blocks_in_the_plan():
    engine, params = _engine()
    before = params[2][1].clone()
    engine.perturb(5, 0.1, StepPlan((2,), (1.0,), (1.0,)))
    only = params[2][1].clone()
    params[2][1].copy_(before)
    engine.perturb(5, 0.1, StepPlan.full(3))
    assert torch.equal(params[2][1], only)


def test_perturb_then_restore_returns_the_weights_within_fp32_rounding():
    engine, params = _engine()
    original = [p.clone() for _, p in params]
    plan = StepPlan.full(3)
    engine.perturb(7, 1e-3, plan)
    assert not torch.equal(params[0][1], original[0])
    engine.perturb(7, -2e-3, plan)
    engine.perturb(7, 1e-3, plan)
    for (_, p), o in zip(params, original):
        torch.testing.assert_close(p, o, rtol=0, atol=1e-6)


def test_plan_scales_multiply_the_noise():
    engine, params = _engine()
    before = params[0][1].clone()
    engine.perturb(3, 0.5, StepPlan((0,), (2.0,), (1.0,)))
    torch.testing.assert_close(params[0][1] - before, engine.noise(3, engine.blocks[0]) * 1.0)


def test_weight_decay_flag_skips_vectors():
    engine, _ = _engine()
    assert [b.decay for b in engine.blocks] == [True, False, True]


def test_low_precision_param_rounds_once_per_call():
    engine, params = _engine(torch.bfloat16)
    plan = StepPlan.full(3)
    ref = params[0][1].float() + 1e-2 * engine.noise(9, engine.blocks[0])
    engine.perturb(9, 1e-2, plan)
    assert params[0][1].dtype == torch.bfloat16
    assert torch.equal(params[0][1], ref.to(torch.bfloat16))


@pytest.mark.parametrize("noise", ["gaussian", "gaussian16", "rademacher", "torch-gaussian"])
def test_a_low_precision_block_is_perturbed_chunk_by_chunk_to_the_same_values(noise):
    """Deferred probes on bf16 weights build theta + sum c z a chunk at a time (the temporary is bf16, not a
    float32 copy): the values must be those of the whole-block float32 arithmetic, over several chunks, a short
    last chunk and two pending terms."""
    numel = 2 * CHUNK + 37
    weight = torch.randn(numel, generator=torch.Generator().manual_seed(1)).to(torch.bfloat16)
    engine = PerturbationEngine([("w", weight)], noise, deferred=True)
    engine.perturb(11, 1e-2, StepPlan.full(1))
    engine.perturb(12, -3e-2, StepPlan.full(1))
    block = engine.blocks[0]
    expected = weight.float()
    engine._add_noise_terms(expected, block, list(engine.pending[0].items()))
    got = engine.perturbed(block)
    assert got.dtype == torch.bfloat16
    assert torch.equal(got, expected.to(torch.bfloat16))
    assert not torch.equal(got, weight)


@pytest.mark.parametrize("noise", ["gaussian", "torch-gaussian"])
def test_a_low_precision_update_is_done_chunk_by_chunk_to_the_same_values(noise):
    """An update of bf16 weights (decay, then two terms) goes a chunk at a time, in place, with no float32 copy of
    the block: the values must be those of the whole-block float32 arithmetic, on the calling thread and on the
    engine's noise threads (torch-gaussian's two blocks are spread over two)."""
    numel = 2 * CHUNK + 37
    weights = [torch.randn(numel, generator=torch.Generator().manual_seed(i)).to(torch.bfloat16) for i in (1, 2)]
    engine = PerturbationEngine([("w1", weights[0]), ("w2", weights[1])], noise, workers=2)
    terms = [(11, 1e-2), (12, -3e-2)]
    expected = []
    for block in engine.blocks:
        reference = block.param.float().mul_(0.99)
        engine._add_noise_terms(reference, block, terms)
        expected.append(reference.to(torch.bfloat16))
    before = [w.clone() for w in weights]
    engine.apply_combinations([(block, terms, 0.99) for block in engine.blocks])
    engine.close()
    for weight, old, new in zip(weights, before, expected):
        assert torch.equal(weight, new)
        assert not torch.equal(weight, old)
