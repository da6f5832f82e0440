"""DiZO: reduction to MeZO, the projection round's ratios, cost and undo, the anchor, patterns, state."""

import math

import pytest
import torch

from zotune import ZOOptimizer
from zotune.errors import ConfigError, StateError, ZotuneWarning
from zotune.methods.dizo import DiZOConfig

LAYERS, WIDTH = 3, 4
PROJECTED = {f"model.layers.{i}.self_attn.{p}_proj.weight" for i in range(LAYERS) for p in "kv"}


def _named_params(seed=0):
    g = torch.Generator().manual_seed(seed)
    names = ["model.embed_tokens.weight"]
    for i in range(LAYERS):
        names += [f"model.layers.{i}.self_attn.{p}_proj.weight" for p in "qkv"]
        names.append(f"model.layers.{i}.input_layernorm.weight")
    return [(n, torch.nn.Parameter(torch.randn(WIDTH, WIDTH if "norm" not in n else 1, generator=g).squeeze(-1)))
            for n in names]


def _loss_fn(named, seed=0, shift=0.5):
    """A quadratic whose minimum is the starting point shifted by ``shift`` (0: moving away only costs)."""
    center = [p.detach().clone() + shift for _, p in named]
    g = torch.Generator().manual_seed(seed + 1)
    scales = [torch.rand(p.shape, generator=g) + 0.5 for _, p in named]

    def loss():
        return float(sum(((p.detach() - c) ** 2 * w).sum() for (_, p), c, w in zip(named, center, scales))) + 1.0

    return loss


def _fresh(named, seed=0):
    """Fresh 'batches': the same quadratic shifted by a small batch-dependent offset."""
    base = _loss_fn(named, seed)

    def fresh_closure(j):
        return lambda: base() + 0.01 * j

    return fresh_closure


def _train(method, steps, seed=3, fresh=True, named=None, **kwargs):
    named = named or _named_params()
    loss = _loss_fn(named)
    opt = ZOOptimizer(named, method, lr=0.01, eps=1e-3, seed=seed, **kwargs)
    fresh_closure = _fresh(named) if fresh else None
    for _ in range(steps):
        opt.step(loss, fresh_closure=fresh_closure)
    return named, opt


def test_dizo_equals_mezo_exactly_when_no_round_falls_in_the_run():
    mezo, _ = _train("mezo", 8)
    dizo, _ = _train("dizo", 8, method_options={"interval": 9})
    assert all(torch.equal(a, b) for (_, a), (_, b) in zip(mezo, dizo))


def test_a_round_costs_exactly_two_j_forward_passes():
    _, opt = _train("dizo", 6, method_options={"interval": 3, "probes": 4})
    assert opt.forward_passes == 6 * 2 + 2 * (2 * 4)


def test_anchor_holds_only_the_projected_tensors_at_their_starting_values():
    named = _named_params()
    start = {n: p.detach().clone() for n, p in named}
    _, opt = _train("dizo", 4, named=named, method_options={"interval": 100})
    assert set(opt.method.anchor) == PROJECTED
    assert all(torch.equal(t, start[n]) for n, t in opt.method.anchor.items())


def test_after_a_round_every_ratio_lies_in_the_clip_range():
    tau = 0.2
    named, opt = _train("dizo", 5, method_options={"interval": 100})
    method = opt.method
    before = method.divergence_norms()
    probe_loss = _loss_fn(named, shift=0.1)
    method.project(4, probe_loss, torch.Generator().manual_seed(0), lambda j: probe_loss)
    after = method.divergence_norms()
    ratios = after / before
    assert (ratios >= 1 - tau - 1e-5).all() and (ratios <= 1 + tau + 1e-5).all()
    event = method.report()[0]
    assert 1 - tau <= event["ratio_min"] <= event["ratio_mean"] <= event["ratio_max"] <= 1 + tau
    torch.testing.assert_close(torch.tensor(sorted([event["ratio_min"], event["ratio_max"]])),
                               torch.tensor([ratios.min().item(), ratios.max().item()]), rtol=1e-5, atol=1e-6)
    assert set(event["divergence_norms"]) == PROJECTED


def test_projection_shrinks_a_displacement_that_only_costs():
    named = _named_params()
    at_anchor = _loss_fn(named, shift=0.0)  # lowest at the pretrained weights
    # eta_p = 2 suits LLM losses; this toy loss is steep in the ratios, so a smaller eta_p.
    named, opt = _train("dizo", 10, named=named, method_options={"interval": 100, "probe_lr": 0.01})
    before = at_anchor()
    opt.method.project(9, at_anchor, torch.Generator().manual_seed(0), lambda j: at_anchor)
    event = opt.method.report()[0]
    assert event["ratio_mean"] < 0.9 and event["ratio_min"] == pytest.approx(0.8) and event["after_step"] == 10
    assert at_anchor() < 0.9 * before


def test_undoing_a_probe_restores_the_weights_to_float32_rounding():
    named, opt = _train("dizo", 5, method_options={"interval": 100})
    before = [p.detach().clone() for _, p in named]
    method = opt.method
    method.set_ratios(torch.tensor([1.3, 0.7, 1.1, 0.9, 1.25, 0.8]))
    assert not all(torch.equal(p, b) for (_, p), b in zip(named, before))
    method.set_ratios(torch.ones(6))
    for (_, p), b in zip(named, before):
        torch.testing.assert_close(p.detach(), b, rtol=2e-7, atol=2e-7)


def test_default_patterns_match_k_and_v_of_every_layer_of_the_default_architecture():
    from transformers import LlamaConfig, LlamaForCausalLM

    # SmolLM2-135M-Instruct's architecture, built on the meta device (no memory, no weights).
    config = LlamaConfig(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                         num_attention_heads=9, num_key_value_heads=3, tie_word_embeddings=True)
    with torch.device("meta"):
        model = LlamaForCausalLM(config)
    opt = ZOOptimizer(model, "dizo")
    names = {b.name for b in opt.method.projected}
    assert names == {f"model.layers.{i}.self_attn.{p}_proj.weight" for i in range(30) for p in "kv"}


def test_patterns_that_match_nothing_fail_with_a_clear_error():
    with pytest.raises(ConfigError, match=r"projected_patterns \['nothing_here'\] match none of the 13"):
        ZOOptimizer(_named_params(), "dizo", method_options={"projected_patterns": ["nothing_here"]})


def test_custom_patterns_choose_the_projected_set():
    opt = ZOOptimizer(_named_params(), "dizo", method_options={"projected_patterns": r"q_proj"})
    assert {b.name for b in opt.method.projected} == {f"model.layers.{i}.self_attn.q_proj.weight"
                                                       for i in range(LAYERS)}


@pytest.mark.parametrize("update", ["sgd", "momentum", "sign", "cons", "adam"])
def test_projection_composes_with_every_update_rule_and_the_adalezo_sampler(update):
    # With AdaLeZO some projected tensors have not moved by the first round: they keep ratio 1.
    named, opt = _train("dizo", 6, sampler="adalezo", update=update,
                        method_options={"interval": 3, "probes": 2, "sample_fraction": 0.3})
    events = opt.method.report()
    assert [e["after_step"] for e in events] == [3, 6]
    assert all(math.isfinite(e["ratio_mean"]) for e in events)
    assert all(torch.isfinite(p).all() for _, p in named)


def test_anchor_of_another_model_is_refused():
    _, opt = _train("dizo", 1)
    renamed = [(name.replace("k_proj", "key"), p) for name, p in _named_params()]
    other = ZOOptimizer(renamed, "dizo")
    with pytest.raises(StateError, match="anchor"):
        other.load_state_dict(opt.state_dict())


def test_without_fresh_batches_the_round_probes_the_step_batch_with_a_warning():
    with pytest.warns(ZotuneWarning, match="step's own batch"):
        _, opt = _train("dizo", 3, fresh=False, method_options={"interval": 3, "probes": 2})
    assert opt.forward_passes == 3 * 2 + 4


def test_non_finite_probe_losses_leave_the_ratios_alone():
    named, opt = _train("dizo", 4, method_options={"interval": 100, "probes": 3})
    before = [p.detach().clone() for _, p in named]
    opt.method.project(3, None, torch.Generator().manual_seed(0), lambda j: (lambda: float("nan")))
    event = opt.method.report()[0]
    assert event["skipped_probes"] == 3 and event["ratio_min"] == event["ratio_max"] == 1.0
    for (_, p), b in zip(named, before):
        torch.testing.assert_close(p.detach(), b, rtol=2e-7, atol=2e-7)


@pytest.mark.parametrize("options,pattern", [
    ({"interval": 0}, "Invalid interval: 0"),
    ({"probes": 1.5}, "Invalid probes: 1.5"),
    ({"probe_eps": 0}, "Invalid probe_eps: 0"),
    ({"probe_lr": -1}, "Invalid probe_lr: -1"),
    ({"ratio_range": 0.5}, "Invalid ratio_range: 0.5"),
    ({"projected_patterns": []}, "empty"),
    ({"projected_patterns": ["("]}, "Invalid projected_patterns entry"),
])
def test_bad_options_fail_at_construction(options, pattern):
    with pytest.raises(ConfigError, match=pattern):
        DiZOConfig(**options)
