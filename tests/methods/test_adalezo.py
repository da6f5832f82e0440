"""AdaLeZO: arms, the sampled-layers-only step, IPW weights, unbiasedness, bandit updates, composition, state."""

import math

import pytest
import torch

from zotune import ZOOptimizer
from zotune.errors import ConfigError, StateError
from zotune.methods.adalezo import AdaLeZOConfig, AdaLeZOSampler, group_layers
from zotune.perturb import PerturbationEngine

NUM_LAYERS, WIDTH = 5, 3


def _layered_params(seed=0):
    """Named tensors shaped like a small decoder: embeddings, layers with two blocks each, a final norm."""
    g = torch.Generator().manual_seed(seed)
    names = ["model.embed_tokens.weight"]
    for i in range(NUM_LAYERS):
        names += [f"model.layers.{i}.mlp.weight", f"model.layers.{i}.norm.weight"]
    names.append("model.norm.weight")
    return [(n, torch.nn.Parameter(torch.randn(WIDTH, generator=g))) for n in names]


def _quadratic(named, seed=0):
    dim = WIDTH * len(named)
    g = torch.Generator().manual_seed(seed + 1)
    a = torch.randn(dim, dim, generator=g)
    hessian = a @ a.T / dim + torch.eye(dim)

    def loss():
        theta = torch.cat([p for _, p in named])
        return 0.5 * theta @ hessian @ theta

    return hessian, loss


def _sampler(rewards=None, **options):
    sampler = AdaLeZOSampler(AdaLeZOConfig(**options))
    sampler.setup(PerturbationEngine(_layered_params()))
    if rewards is not None:
        sampler.rewards = torch.tensor(rewards, dtype=torch.float64)
        sampler.probs = sampler.sampling_probs(sampler.rewards)
    return sampler


# Rewards that make the sampling distribution far from uniform (7 arms: embed, 5 layers, rest).
SKEWED_REWARDS = [0.05, 1.0, 0.9, 0.2, 0.0, 0.5, 0.1]


def test_arms_follow_parameter_names():
    arms = group_layers([n for n, _ in _layered_params()], AdaLeZOConfig().layer_pattern, "embed")
    assert list(arms) == ["embed", *[f"model.layers.{i}" for i in range(NUM_LAYERS)], "rest"]
    assert arms["model.layers.1"] == [3, 4] and arms["rest"] == [11]
    gpt2 = group_layers(["transformer.wte.weight", "transformer.h.0.attn.c_attn.weight",
                         "transformer.h.10.mlp.c_fc.bias", "transformer.ln_f.weight"],
                        AdaLeZOConfig().layer_pattern, "embed")
    assert list(gpt2) == ["rest", "transformer.h.0", "transformer.h.10"]
    t5 = group_layers(["encoder.block.0.layer.0.weight", "decoder.block.0.layer.0.weight"],
                      AdaLeZOConfig().layer_pattern, "embed")
    assert list(t5) == ["encoder.block.0", "decoder.block.0"]  # separate stacks, separate arms


def test_default_model_architecture_has_a_layer_arm_per_decoder_layer(tiny_model_and_tokenizer):
    model, _ = tiny_model_and_tokenizer
    opt = ZOOptimizer(model, "adalezo")
    assert opt.sampler.arm_names == ["embed", "model.layers.0", "model.layers.1", "rest"]
    assert opt.sampler.k == 1  # max(1, floor(0.2 * 4))


def test_only_blocks_of_sampled_layers_change_in_a_step():
    named = _layered_params()
    _, loss = _quadratic(named)
    opt = ZOOptimizer(named, "adalezo", lr=0.1, eps=1e-3, seed=4, method_options={"sample_fraction": 0.4})
    for _ in range(5):
        before = [p.detach().clone() for _, p in named]
        opt.step(loss)
        sampled = {b for arm in opt.sampler.last_draw.arms for b in opt.sampler.arm_blocks[arm]}
        changed = {i for i, ((_, p), old) in enumerate(zip(named, before)) if not torch.equal(p, old)}
        assert changed == sampled and 0 < len(sampled) < len(named)


def test_step_applies_the_ipw_weighted_update_of_each_sampled_layer():
    named = _layered_params()
    _, loss = _quadratic(named)
    before = [p.detach().clone() for _, p in named]
    lr = 0.05
    opt = ZOOptimizer(named, "adalezo", lr=lr, eps=1e-3, seed=2, method_options={"sample_fraction": 0.6})
    opt.step(loss)
    draw, probe = opt.sampler.last_draw, opt.last_probes[0]
    k, probs = opt.sampler.k, [1 / 7] * 7
    assert k == 4 and sum(draw.counts) == k
    for arm, count, weight in zip(draw.arms, draw.counts, draw.weights):
        assert math.isclose(weight, count * min(1 / (k * probs[arm]), 4.0), rel_tol=1e-12)
        for b in opt.sampler.arm_blocks[arm]:
            z = opt.engine.noise(probe.seed, opt.engine.blocks[b])
            expected = before[b] - lr * weight * probe.projected_grad * z
            torch.testing.assert_close(named[b][1].detach(), expected, rtol=1e-5, atol=1e-6)


def _mean_weights(sampler, trials):
    total = torch.zeros(len(sampler.arm_names), dtype=torch.float64)
    generator = torch.Generator().manual_seed(0)
    for _ in range(trials):
        sampler.plan(0, generator)
        for arm, weight in zip(sampler.last_draw.arms, sampler.last_draw.weights):
            total[arm] += weight
    return total / trials


def test_ipw_weights_have_expectation_one_without_the_clip():
    sampler = _sampler(SKEWED_REWARDS, weight_clip=math.inf, sample_fraction=0.3, temperature=0.3)
    assert sampler.probs.max() / sampler.probs.min() > 5  # a genuinely skewed distribution
    torch.testing.assert_close(_mean_weights(sampler, 20000), torch.ones(7, dtype=torch.float64),
                               rtol=0, atol=0.08)


def test_clip_damps_rarely_drawn_layers_to_c_k_p():
    sampler = _sampler(SKEWED_REWARDS, weight_clip=2.0, sample_fraction=0.3, temperature=0.3)
    expected = torch.clamp(2.0 * sampler.k * sampler.probs, max=1.0)  # E[w_l] = min(1, C k p_l)
    assert (expected < 0.9).sum() >= 2  # the clip is active for some arms
    torch.testing.assert_close(_mean_weights(sampler, 20000), expected, rtol=0, atol=0.06)


def test_gradient_estimate_is_unbiased_on_a_quadratic_without_the_clip():
    named = _layered_params()
    hessian, loss = _quadratic(named)
    theta0 = [p.detach().clone() for _, p in named]
    true_grad = hessian @ torch.cat(theta0)
    reference = _sampler(SKEWED_REWARDS, weight_clip=math.inf).state_dict()
    opt = ZOOptimizer(named, "adalezo", lr=1.0, eps=1e-3, seed=0, method_options={"weight_clip": math.inf})
    trials, total = 6000, torch.zeros_like(true_grad)
    for _ in range(trials):  # each trial: the same theta and bandit state, a fresh step seed
        with torch.no_grad():
            for (_, p), p0 in zip(named, theta0):
                p.copy_(p0)
        opt.sampler.load_state_dict(reference)
        opt.step(loss)
        total += torch.cat(theta0) - torch.cat([p.detach() for _, p in named])
    mean = total / trials
    assert (mean - true_grad).norm() / true_grad.norm() < 0.15
    assert torch.nn.functional.cosine_similarity(mean, true_grad, dim=0) > 0.985


def test_rewards_and_probabilities_evolve_as_specified():
    named = _layered_params()
    _, loss = _quadratic(named)
    tau, gamma, alpha = 0.6, 0.1, 0.1
    opt = ZOOptimizer(named, "adalezo", lr=0.01, seed=1, method_options={"sample_fraction": 0.4})
    rewards = [0.0] * 7
    for _ in range(4):
        opt.step(loss)
        g = abs(opt.last_probes[0].projected_grad)
        for arm in opt.sampler.last_draw.arms:  # each sampled arm once, however often drawn
            rewards[arm] = (1 - alpha) * rewards[arm] + alpha * g
        top = max(rewards)
        scores = [r / top for r in rewards] if top > 1e-6 else rewards
        exp = [math.exp(s / tau) for s in scores]
        probs = [(1 - gamma) * e / sum(exp) + gamma / 7 for e in exp]
        assert opt.sampler.rewards.tolist() == pytest.approx(rewards, rel=1e-12)
        assert opt.sampler.probs.tolist() == pytest.approx(probs, rel=1e-9)
    assert opt.sampler.probs.min() >= gamma / 7


def test_rms_scaling_divides_each_weight_by_the_running_rms():
    named = _layered_params()
    _, loss = _quadratic(named)
    opt = ZOOptimizer(named, "adalezo", lr=0.01, seed=3, method_options={"rms_scaling": True, "rms_beta": 0.5})
    opt.step(loss)
    g = opt.last_probes[0].projected_grad
    for arm, w in zip(opt.sampler.last_draw.arms, opt.sampler.last_draw.weights):
        assert opt.sampler.rms[arm].item() == pytest.approx(0.5 * (g * w) ** 2, rel=1e-12)


def _run(seed, steps=6, **kwargs):
    named = _layered_params()
    _, loss = _quadratic(named)
    opt = ZOOptimizer(named, "adalezo", lr=0.02, seed=seed, **kwargs)
    draws = []
    for _ in range(steps):
        opt.step(loss)
        draws.append(opt.sampler.last_draw.arms)
    return torch.cat([p.detach() for _, p in named]), draws, opt


@pytest.mark.parametrize("update,lr", [("sgd", 0.01), ("momentum", 0.002), ("sign", 0.05), ("cons", 0.01),
                                       ("adam", 0.05)])
@pytest.mark.parametrize("n", [1, 2])
def test_sampler_composes_with_every_update_rule_and_n_spsa(update, lr, n):
    named = _layered_params()
    _, loss = _quadratic(named)
    opt = ZOOptimizer(named, "mezo", sampler="adalezo", update=update, n_directions=n, lr=lr, seed=0)
    start = loss().item()
    for _ in range(3):
        before = [p.detach().clone() for _, p in named]
        opt.step(loss)
        sampled = {b for arm in opt.sampler.last_draw.arms for b in opt.sampler.arm_blocks[arm]}
        for i, ((_, p), old) in enumerate(zip(named, before)):
            if i not in sampled:
                assert torch.equal(p, old), f"unsampled block {i} changed"
    assert opt.forward_passes >= 3 * 2 * n
    for _ in range(200):
        opt.step(loss)
    assert loss().item() < 0.5 * start


def test_state_of_another_model_is_refused():
    _, _, opt = _run(0, steps=1)
    other = AdaLeZOSampler(AdaLeZOConfig())
    named = _layered_params()
    other.setup(PerturbationEngine(named[:5]))
    with pytest.raises(StateError, match="arms"):
        other.load_state_dict(opt.sampler.state_dict())


def test_report_counts_draws_per_interval_and_resets():
    _, _, opt = _run(0, steps=5)
    report, = opt.sampler.report()
    assert sum(report["draws"]) == 5 * opt.sampler.k and len(report["arms"]) == 7
    assert 0.0 <= report["clipped_fraction"] <= 1.0
    assert sum(opt.sampler.report()[0]["draws"]) == 0


@pytest.mark.parametrize("options,pattern", [
    ({"sample_fraction": 0.0}, "sample_fraction"),
    ({"sample_fraction": 1.5}, "sample_fraction"),
    ({"temperature": 0}, "temperature"),
    ({"uniform_mix": -0.1}, "uniform_mix"),
    ({"reward_rate": 0}, "reward_rate"),
    ({"weight_clip": 0.5}, "weight_clip"),
    ({"weight_clip": "lots"}, "weight_clip"),
    ({"rms_beta": 1.0}, "rms_beta"),
    ({"layer_pattern": "layers"}, "needs a group"),
    ({"layer_pattern": "("}, "layer_pattern"),
    ({"rho": 0.2}, r"Unknown option\(s\) \['rho'\] for method 'adalezo' with sampler 'adalezo'"),
])
def test_bad_options_fail_at_construction(options, pattern):
    with pytest.raises(ConfigError, match=pattern):
        ZOOptimizer(_layered_params(), "adalezo", method_options=options)


def test_weight_clip_accepts_inf_as_a_string():
    assert AdaLeZOConfig(weight_clip="inf").weight_clip == math.inf


def test_a_model_with_one_arm_is_refused():
    with pytest.raises(ConfigError, match="at least 2"):
        ZOOptimizer(torch.nn.Linear(3, 2), "adalezo")


def test_sampler_options_need_a_sampler_that_declares_them():
    with pytest.raises(ConfigError, match="for method 'mezo' with sampler 'full'"):
        ZOOptimizer(_layered_params(), "mezo", method_options={"sample_fraction": 0.3})
    opt = ZOOptimizer(_layered_params(), "mezo", sampler="adalezo", method_options={"sample_fraction": 0.3})
    assert opt.sampler.k == 2

