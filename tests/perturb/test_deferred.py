"""Deferred perturbation (forward hooks) and the drift of +-eps perturbation in each dtype."""

import math

import pytest
import torch

from zotune import ZOOptimizer
from zotune.errors import ConfigError
from zotune.perturb import PerturbationEngine, StepPlan, attach_perturbation_hooks


def _model(dtype=torch.float32, tied=True):
    from conftest import build_tiny_model

    model = build_tiny_model(vocab_size=40, seed=0).to(dtype)
    if not tied:
        model.config.tie_word_embeddings = False
    return model


def _batch():
    generator = torch.Generator().manual_seed(0)
    return torch.randint(3, 40, (4, 9), generator=generator)


def _loss_fn(model, ids):
    def closure():
        return model(input_ids=ids, labels=ids).loss.float()
    return closure


def _weights(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def test_a_forward_sees_the_perturbed_weights_and_the_weights_are_not_written():
    model, ids = _model(), _batch()
    in_place = _model()
    engine = PerturbationEngine(list(model.named_parameters()), deferred=True)
    attach_perturbation_hooks(model, engine)
    reference = PerturbationEngine(list(in_place.named_parameters()))
    before = _weights(model)
    plan = StepPlan.full(len(engine))
    with torch.no_grad():
        engine.perturb(7, 1e-2, plan)
        reference.perturb(7, 1e-2, plan)
        deferred_loss = _loss_fn(model, ids)()
        in_place_loss = _loss_fn(in_place, ids)()
    torch.testing.assert_close(deferred_loss, in_place_loss, rtol=1e-5, atol=1e-6)
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())
    engine.perturb(7, -1e-2, plan)
    assert engine.pending == {}


def test_tied_embeddings_are_perturbed_in_every_module_that_uses_them():
    model = _model(tied=True)
    assert model.lm_head.weight is model.model.embed_tokens.weight
    engine = PerturbationEngine(list(model.named_parameters()), deferred=True)
    attach_perturbation_hooks(model, engine)
    seen = []
    model.lm_head.register_forward_pre_hook(lambda m, a: seen.append(m.weight.detach().clone()))
    engine.perturb(3, 0.5, StepPlan.full(len(engine)))
    with torch.no_grad():
        model(input_ids=_batch())
    block = engine.blocks[0]
    assert block.name == "model.embed_tokens.weight"
    assert not torch.equal(seen[0], block.param)
    torch.testing.assert_close(seen[0], block.param + 0.5 * engine.noise(3, block))


@pytest.mark.parametrize("by_rows", [False, True])
def test_the_original_weights_come_back_when_a_forward_raises(monkeypatch, by_rows):
    import zotune.perturb.hooks as hooks

    if by_rows:
        monkeypatch.setattr(hooks, "ROW_GROUP", 200)  # the embedding too is used a group of rows at a time
    model = _model()
    engine = PerturbationEngine(list(model.named_parameters()), deferred=True)
    attach_perturbation_hooks(model, engine)
    before = _weights(model)
    engine.perturb(1, 1.0, StepPlan.full(len(engine)))
    with pytest.raises(IndexError):
        model(input_ids=torch.tensor([[1000]]))  # out of the vocabulary
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())
    engine.perturb(1, -1.0, StepPlan.full(len(engine)))
    with torch.no_grad():
        model(input_ids=_batch())  # nothing left over from the forward that raised


@pytest.mark.parametrize("update", ["sgd", "adam"])
def test_deferred_steps_match_in_place_steps_in_fp32(update):
    # The two modes see weights that differ by the rounding residue of in-place +eps/-2eps (a few ulps), so their
    # losses differ in the last bit or two, and g = (L+ - L-) / 2 eps amplifies that by 1 / 2 eps: one ulp of a
    # loss of 3.7 is 1.2e-4 in g. How many ulps depends on the CPU's matmul kernels (this test failed on another
    # machine of the same kind at 1.05e-6 against atol 1e-6 when the weights were compared directly). So the losses
    # are checked to agree to 1e-5, and the deferred run is then fed the in-place run's values: the weights must
    # then agree to the in-place residue: per step, in-place rounds three times (+eps z, -2 eps z, the fused
    # restore and update) and deferred once, half an ulp each, so at most 2 ulps of the tensor's largest value.
    ids = _batch()
    model = _model()
    opt = ZOOptimizer(model, lr=1e-3, eps=1e-3, seed=0, update=update, perturbation="in_place")
    closure = _loss_fn(model, ids)
    in_place_losses = []

    def recording():
        in_place_losses.append(float(closure()))
        return in_place_losses[-1]

    for _ in range(5):
        opt.step(recording)
    in_place = _weights(model)
    model = _model()
    opt = ZOOptimizer(model, lr=1e-3, eps=1e-3, seed=0, update=update, perturbation="deferred")
    closure, logged = _loss_fn(model, ids), iter(in_place_losses)

    def fed():
        value = next(logged)
        assert float(closure()) == pytest.approx(value, rel=1e-5)  # the hooks show the same perturbed weights
        return value

    steps = 5
    for _ in range(steps):
        opt.step(fed)
    for name, tensor in in_place.items():
        largest = tensor.abs().max()
        residue = steps * 2 * float(torch.nextafter(largest, torch.tensor(math.inf)) - largest)  # fp32 ulps
        torch.testing.assert_close(model.get_parameter(name).detach(), tensor, rtol=0, atol=residue)


def test_auto_defers_for_low_precision_modules_only():
    assert ZOOptimizer(_model(torch.bfloat16)).perturbation == "deferred"
    assert ZOOptimizer(_model()).perturbation == "in_place"
    tensors = [torch.zeros(3, dtype=torch.bfloat16, requires_grad=True)]
    assert ZOOptimizer(tensors).perturbation == "in_place"
    with pytest.raises(ConfigError, match="needs the model"):
        ZOOptimizer(tensors, perturbation="deferred")
    with pytest.raises(ConfigError, match="Invalid perturbation"):
        ZOOptimizer(_model(), perturbation="lazy")


def _drift(dtype, mode, steps):
    """Max |theta_after - theta_before| after ``steps`` steps at lr 0 (the weights should not move at all)."""
    model, ids = _model(dtype), _batch()
    before = _weights(model)
    opt = ZOOptimizer(model, lr=0.0, eps=1e-3, seed=0, perturbation=mode)
    closure = _loss_fn(model, ids)
    for _ in range(steps):
        opt.step(closure)
    return max(float((p.detach().float() - before[n].float()).abs().max()) for n, p in model.named_parameters())


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_deferred_perturbation_does_not_drift_in_250_steps_at_lr_0(dtype):
    assert _drift(dtype, "deferred", 250) == 0.0


def test_in_place_drift_at_lr_0_is_fp32_rounding_in_fp32_and_large_in_bf16():
    # Documented bound (docs/reliability.md): in fp32 each +eps/-2eps/+eps round trip moves a weight by at most a
    # few ulps; 200 steps stay far below eps. bf16 rounds each perturbation to 8 bits and drifts much more.
    fp32 = _drift(torch.float32, "in_place", 200)
    bf16 = _drift(torch.bfloat16, "in_place", 200)
    assert 0.0 < fp32 < 1e-5
    assert bf16 > 100 * fp32


def test_a_non_finite_loss_skips_the_step_and_leaves_low_precision_weights_untouched():
    model = _model(torch.bfloat16)
    before = _weights(model)
    opt = ZOOptimizer(model, lr=1e-2, eps=1e-3)
    assert opt.perturbation == "deferred"
    losses = iter([0.7, float("nan")])
    with pytest.warns(UserWarning, match="Non-finite loss"):
        assert math.isnan(opt.step(lambda: next(losses)))
    assert opt.last_record.skipped and opt.consecutive_skips == 1 and opt.engine.pending == {}
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("tied", [True, False])
def test_large_weights_used_by_rows_give_the_losses_of_whole_perturbed_copies(monkeypatch, dtype, tied):
    import zotune.perturb.engine as engine_module
    import zotune.perturb.hooks as hooks

    def loss_at(row_group):
        monkeypatch.setattr(hooks, "ROW_GROUP", row_group)
        monkeypatch.setattr(engine_module, "CHUNK", 100)  # chunks that end inside rows, and groups across chunks
        model, ids = _model(dtype, tied), _batch()
        engine = PerturbationEngine(list(model.named_parameters()), deferred=True)
        handles = attach_perturbation_hooks(model, engine)
        built = []
        monkeypatch.setattr(engine, "perturbed", lambda block: built.append(block.name) or
                            PerturbationEngine.perturbed(engine, block))
        before = _weights(model)
        engine.perturb(5, 0.5, StepPlan.full(len(engine)))  # large: a row out of place changes the loss
        with torch.no_grad():
            loss = _loss_fn(model, ids)()
        assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())
        for handle in handles:
            handle.remove()
        assert all("forward" not in m.__dict__ for m in model.modules())
        return loss, built

    by_rows, built = loss_at(row_group=200)  # rows of 8 values a group: 40 x 32 embedding, 64 x 32 MLP...
    assert not any(name.endswith(("embed_tokens.weight", "proj.weight")) for name in built)
    whole, built = loss_at(row_group=1 << 30)
    assert any(name.endswith("embed_tokens.weight") for name in built)
    torch.testing.assert_close(by_rows, whole, rtol=1e-6 if dtype == torch.float32 else 1e-2, atol=0)  # one rounding


def test_a_forward_set_on_the_module_before_the_hooks_comes_back_when_they_are_removed(monkeypatch):
    import zotune.perturb.hooks as hooks

    monkeypatch.setattr(hooks, "ROW_GROUP", 200)
    model = _model()
    head = model.model.layers[0].mlp.up_proj
    own = head.forward
    head.forward = lambda x: own(x)  # as accelerate's hooks do
    mine = head.forward
    engine = PerturbationEngine(list(model.named_parameters()), deferred=True)
    handles = attach_perturbation_hooks(model, engine)
    assert head.forward is not mine
    for handle in handles:
        handle.remove()
    assert head.forward is mine
