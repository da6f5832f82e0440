"""LDSD: reduction to MeZO, the leave-one-out mu-gradient, forward-pass count, fp32 mu, learning, state."""

import math

import pytest
import torch

from zotune import ZOOptimizer
from zotune.errors import ConfigError, StateError
from zotune.methods.ldsd.policy import PolicyNoise
from zotune.perturb import PerturbationEngine, StepPlan, mix_seed
from zotune.perturb.noise import CHUNK

DIM = 12


def _problem(seed=0):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(DIM, DIM, generator=g)
    hessian = a @ a.T / DIM + torch.eye(DIM)
    named = [("w1", torch.nn.Parameter(torch.randn(DIM // 2, generator=g))),
             ("w2", torch.nn.Parameter(torch.randn(DIM // 2, generator=g)))]

    def loss():
        theta = torch.cat([p for _, p in named])
        return 0.5 * theta @ hessian @ theta

    return named, loss


def _weights(named):
    return torch.cat([p.detach() for _, p in named])


def test_one_candidate_and_no_mu_learning_is_exactly_mezo():
    runs = []  # LDSD draws xi with torch's generator: MeZO's noise torch-gaussian
    for method, options, noise in (("mezo", {}, "torch-gaussian"), ("ldsd", {"candidates": 1, "lr_mu": 0.0}, "gaussian")):
        named, loss = _problem()
        opt = ZOOptimizer(named, method, lr=0.02, seed=4, method_options=options, noise=noise)
        for _ in range(10):
            opt.step(loss)
        runs.append(_weights(named))
    assert torch.equal(*runs)


def test_forward_passes_are_k_plus_one_per_step():
    named, loss = _problem()
    opt = ZOOptimizer(named, "ldsd", lr=0.01, method_options={"candidates": 4})
    for _ in range(3):
        opt.step(loss)
    assert opt.forward_passes == 3 * (4 + 1)


def test_best_candidate_is_used_for_the_two_point_estimate():
    named, loss = _problem()
    eps = 1e-3
    opt = ZOOptimizer(named, "ldsd", lr=0.0, eps=eps, seed=1, method_options={"candidates": 5})
    theta = _weights(named).clone()
    opt.step(loss)
    probe = opt.last_probes[0]
    candidates, loss_minus = probe.losses[:5], probe.losses[5]
    best = min(range(5), key=lambda i: candidates[i])
    step_seed = int(torch.randint(0, 2**63 - 1, (1,), generator=torch.Generator().manual_seed(1)))
    direction_seed = mix_seed(step_seed, 0)
    assert probe.seed == ([direction_seed] + [mix_seed(direction_seed, i) for i in range(1, 5)])[best]
    assert probe.projected_grad == pytest.approx((candidates[best] - loss_minus) / (2 * eps), rel=1e-9)
    torch.testing.assert_close(_weights(named), theta, rtol=0, atol=1e-6)  # lr 0: theta restored


def test_mu_gradient_equals_a_hand_computed_leave_one_out_estimate():
    named, loss = _problem()
    k, sigma, lr_mu = 4, 0.7, 0.05
    opt = ZOOptimizer(named, "ldsd", lr=0.01, eps=1e-3, seed=2,
                      method_options={"candidates": k, "sigma": sigma, "lr_mu": lr_mu})
    opt.step(loss)  # mu = 0 before this step; afterwards it holds -lr_mu * g_mu
    mu_before = {i: m.clone() for i, m in opt.method.mu.items()}
    opt.step(loss)
    probe = opt.last_probes[0]
    losses = list(probe.losses[:k])
    step_seed = _step_seed(2, 2)
    seeds = [mix_seed(step_seed, 0)] + [mix_seed(mix_seed(step_seed, 0), i) for i in range(1, k)]
    total = sum(losses)
    for b, block in enumerate(opt.engine.blocks):
        grad_mu = torch.zeros(block.param.shape)
        for seed, f in zip(seeds, losses):
            xi = torch.empty(block.param.shape).normal_(generator=torch.Generator().manual_seed(mix_seed(seed, b)))
            z = mu_before[b] + sigma * xi  # the sample as drawn, from its own seed
            advantage = (k * f - total) / (k - 1)
            grad_mu += advantage * (z - mu_before[b]) / (k * sigma**2)
        torch.testing.assert_close(opt.method.mu[b], mu_before[b] - lr_mu * grad_mu, rtol=1e-5, atol=1e-7)


def _step_seed(seed, step_number):
    generator = torch.Generator().manual_seed(seed)
    for _ in range(step_number):
        value = int(torch.randint(0, 2**63 - 1, (1,), generator=generator))
    return value


def test_mu_learns_a_descent_direction_on_a_linear_loss():
    torch.manual_seed(0)
    slope = torch.randn(20)
    theta = torch.nn.Parameter(torch.zeros(20))
    opt = ZOOptimizer([("theta", theta)], "ldsd", lr=0.0, eps=1e-2, seed=0,
                      method_options={"candidates": 5, "lr_mu": 0.05})
    for _ in range(60):
        opt.step(lambda: slope @ theta)
    mu = opt.method.mu[0]
    assert torch.nn.functional.cosine_similarity(mu, -slope, dim=0) > 0.8
    metrics = opt.method.metrics()
    assert metrics["mu_norm"] == pytest.approx(mu.norm().item(), rel=1e-6)
    assert metrics["mu_grad_cosine"] < 0  # mu points downhill, the gradient estimate uphill


def test_the_weight_of_mu_against_the_noise_is_logged_and_reported_per_block():
    """|mu| / (sigma |xi|) for the step's first direction, mu before its update: recomputed by hand here."""
    from zotune.methods.ldsd.method import RATIO_REPORT_STEPS
    from zotune.perturb import gaussian_direction

    torch.manual_seed(0)
    slope = torch.randn(20)
    theta = torch.nn.Parameter(torch.zeros(20))
    opt = ZOOptimizer([("theta", theta)], "ldsd", lr=0.0, eps=1e-2, seed=0,
                      method_options={"candidates": 3, "lr_mu": 0.05, "sigma": 0.5})
    events = []
    for _ in range(RATIO_REPORT_STEPS):
        mu_before = opt.method.mu[0].clone()
        opt.step(lambda: slope @ theta)
        events += opt.method.report()
    best_seed = opt.last_probes[0].seed
    xi = opt.engine.noise(best_seed, opt.engine.blocks[0], direction=gaussian_direction)
    expected = (mu_before.norm() / (0.5 * xi.norm())).item()
    metrics = opt.method.metrics()
    assert metrics["mu_noise_ratio"] == pytest.approx(expected, rel=1e-5) and expected > 0
    assert metrics["mu_noise_ratio_max"] == pytest.approx(expected, rel=1e-5)  # one block
    (event,) = events
    assert event["event"] == "mu_noise_ratio" and event["blocks"] == {"theta": pytest.approx(expected, rel=1e-5)}


def test_mu_stays_float32_when_the_model_is_bfloat16():
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1)).to(torch.bfloat16)
    data = torch.randn(16, 4, dtype=torch.bfloat16)
    opt = ZOOptimizer(model, "ldsd", lr=1e-2, eps=1e-2, method_options={"candidates": 3, "lr_mu": 0.01})
    for _ in range(3):
        opt.step(lambda: model(data).float().pow(2).mean())
    assert all(m.dtype == torch.float32 for m in opt.method.mu.values())
    assert any(m.abs().sum() > 0 for m in opt.method.mu.values())
    assert all(p.dtype == torch.bfloat16 for p in model.parameters())


def test_best_of_k_ablation_keeps_mu_at_zero():
    named, loss = _problem()
    opt = ZOOptimizer(named, "ldsd", lr=0.01, method_options={"lr_mu": 0.0})
    for _ in range(5):
        opt.step(loss)
    assert all(not m.any() for m in opt.method.mu.values())


def test_mu_of_another_model_is_refused():
    named, loss = _problem()
    opt = ZOOptimizer(named, "ldsd")
    other = ZOOptimizer([("w1", torch.nn.Parameter(torch.zeros(DIM // 2))),
                         ("w3", torch.nn.Parameter(torch.zeros(DIM // 2)))], "ldsd")
    with pytest.raises(StateError, match="mu does not match"):
        other.load_state_dict(opt.state_dict())


def test_a_non_finite_candidate_skips_the_step():
    named, _ = _problem()
    calls = iter(range(100))
    opt = ZOOptimizer(named, "ldsd", lr=0.01, method_options={"candidates": 3})
    before = _weights(named).clone()
    with pytest.warns(UserWarning, match="Non-finite"):
        loss = opt.step(lambda: float("nan") if next(calls) == 1 else 1.0)
    assert math.isnan(loss)
    torch.testing.assert_close(_weights(named), before, rtol=0, atol=1e-6)


@pytest.mark.parametrize("options,pattern", [
    ({"candidates": 0}, "Invalid candidates: 0"),
    ({"sigma": 0}, "Invalid sigma: 0"),
    ({"lr_mu": -1}, "Invalid lr_mu: -1"),
])
def test_bad_options_fail_at_construction(options, pattern):
    named, _ = _problem()
    with pytest.raises(ConfigError, match=pattern):
        ZOOptimizer(named, "ldsd", method_options=options)


def test_the_policy_stream_is_sigma_xi_plus_mu_bit_for_bit():
    numel = CHUNK + 37  # more than one chunk
    mu = torch.randn(numel, generator=torch.Generator().manual_seed(3))
    engine = PerturbationEngine([("w", torch.zeros(numel)), ("v", torch.zeros(40))],
                                PolicyNoise(0.7, lambda index: mu if index == 0 else torch.zeros(40)), workers=2)
    engine.perturb(11, 1.0, StepPlan.full(2))
    xi = torch.empty(numel).normal_(generator=torch.Generator().manual_seed(mix_seed(11, 0)))
    assert torch.equal(engine.blocks[0].param, torch.zeros(numel).add_(xi.mul(0.7).add_(mu)))


def test_worker_threads_do_not_change_an_ldsd_run():
    def run(workers):
        torch.manual_seed(0)
        model = torch.nn.Sequential(*[torch.nn.Linear(8, 8) for _ in range(4)])
        data = torch.randn(16, 8)
        opt = ZOOptimizer(model, "ldsd", lr=1e-2, eps=1e-3, seed=3, method_options={"candidates": 3, "lr_mu": 0.05})
        opt.engine.workers = opt.method._mu_engine.workers = workers
        for _ in range(4):
            opt.step(lambda: model(data).pow(2).mean())
        return [p.detach().clone() for p in model.parameters()] + list(opt.method.mu.values())

    assert all(torch.equal(a, b) for a, b in zip(run(1), run(4)))
