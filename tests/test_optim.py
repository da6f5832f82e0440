"""ZOOptimizer: the SPSA estimate, the update rules, reproducibility, state, and input validation."""

import math
import warnings

import pytest
import torch

from quadratic import DIM, mean_step
from quadratic import quadratic as _quadratic
from zotune import ZOOptimizer
from zotune.errors import ConfigError, StateError, UnknownNameError, ZotuneWarning
from zotune.perturb import mix_seed


# Per trial the estimate's error is about sqrt(d + 1) |grad| for Gaussian directions and at most sqrt(d) |grad| for
# Rademacher ones: over 4000 trials, 3 sigma of the mean is ~0.16 |grad|.
@pytest.mark.parametrize("noise", ["gaussian", "gaussian16", "rademacher"])
def test_spsa_estimate_is_unbiased_on_a_quadratic(noise):
    x, hessian, loss = _quadratic()
    true_grad = hessian @ x.detach()
    mean = mean_step(x, loss, lambda seed: ZOOptimizer([x], lr=1.0, eps=1e-3, seed=seed, noise=noise))
    assert (mean - true_grad).norm() / true_grad.norm() < 0.16
    assert torch.nn.functional.cosine_similarity(mean, true_grad, dim=0) > 0.98


def test_lr_zero_restores_weights_within_fp32_rounding():
    x, _, loss = _quadratic()
    x0 = x.detach().clone()
    opt = ZOOptimizer([x], lr=0.0, eps=1e-2, seed=3)
    for _ in range(20):
        opt.step(loss)
    torch.testing.assert_close(x.detach(), x0, rtol=0, atol=1e-6)


@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
@pytest.mark.parametrize("n", [1, 3])
def test_fused_restore_and_update_equals_the_unfused_one(weight_decay, n):
    results = []
    for fuse in (True, False):
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(6, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))
        data = torch.randn(16, 6)
        opt = ZOOptimizer(model, lr=0.05, eps=1e-3, seed=1, n_directions=n, weight_decay=weight_decay,
                          fuse_restore=fuse)
        for _ in range(5):
            opt.step(lambda: model(data).pow(2).mean())
        results.append([p.detach().clone() for p in model.parameters()])
    for fused, unfused in zip(*results):
        torch.testing.assert_close(fused, unfused, rtol=1e-5, atol=3e-6)  # fp32 rounding, amplified by 1 / eps


def test_sgd_step_matches_a_hand_computed_n_spsa_update():
    x, _, loss = _quadratic()
    x0 = x.detach().clone()
    lr, eps, n = 0.01, 1e-3, 3
    opt = ZOOptimizer([("x", x)], lr=lr, eps=eps, seed=5, n_directions=n)
    step_seed = int(torch.randint(0, 2**63 - 1, (1,), generator=torch.Generator().manual_seed(5)))
    opt.step(loss)
    expected = x0.clone()
    for i in range(n):
        seed = mix_seed(step_seed, i)
        z = opt.engine.noise(seed, opt.engine.blocks[0]).clone()
        assert opt.last_probes[i].seed == seed
        expected -= lr / n * opt.last_probes[i].projected_grad * z
        lp, lm = opt.last_probes[i].losses
        with torch.no_grad():
            ref_lp = 0.5 * (x0 + eps * z) @ _quadratic()[1] @ (x0 + eps * z)
        assert math.isclose(lp, ref_lp.item(), rel_tol=1e-5)
    torch.testing.assert_close(x.detach(), expected, rtol=1e-5, atol=1e-6)


def test_weight_decay_skips_biases():
    torch.manual_seed(0)
    layer = torch.nn.Linear(3, 2)
    opt = ZOOptimizer(layer, lr=0.1, eps=1e-3, weight_decay=0.5)
    w0, b0 = layer.weight.detach().clone(), layer.bias.detach().clone()
    opt.step(lambda: torch.tensor(1.0))  # constant loss: g = 0, only decay acts
    torch.testing.assert_close(layer.weight.detach(), w0 * 0.95, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(layer.bias.detach(), b0, rtol=0, atol=1e-6)


def test_same_seed_same_weights_and_different_seed_different_weights():
    def run(seed):
        x, _, loss = _quadratic()
        opt = ZOOptimizer([x], lr=0.01, seed=seed)
        for _ in range(10):
            opt.step(loss)
        return x.detach().clone()

    assert torch.equal(run(1), run(1))
    assert not torch.equal(run(1), run(2))


@pytest.mark.parametrize("update,lr", [("sgd", 0.02), ("momentum", 0.002), ("sign", 0.02), ("cons", 0.02),
                                       ("adam", 0.03)])
def test_every_update_rule_lowers_a_quadratic(update, lr):
    x, _, loss = _quadratic()
    start = loss().item()
    opt = ZOOptimizer([x], lr=lr, eps=1e-3, update=update, seed=0)
    for _ in range(300):
        opt.step(loss)
    assert loss().item() < 0.5 * start


@pytest.mark.parametrize("update,lr", [("sgd", 0.02), ("momentum", 0.005), ("adam", 0.01)])
def test_every_update_rule_trains_a_two_layer_mlp(update, lr):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    inputs = torch.randn(32, 4)
    targets = inputs[:, :1] * 0.5 - inputs[:, 1:2]
    loss = lambda: (model(inputs) - targets).pow(2).mean()  # noqa: E731
    start = loss().item()
    opt = ZOOptimizer(model, lr=lr, eps=1e-3, update=update, seed=0)
    for _ in range(50):
        opt.step(loss)
    assert loss().item() < 0.9 * start


def test_momentum_and_adam_first_steps():
    # Momentum's first step equals SGD's; Adam's first bias-corrected step is lr * sign(g) per coordinate.
    finals = {}
    for update in ("sgd", "momentum", "adam", "sign"):
        x, _, loss = _quadratic()
        x0 = x.detach().clone()
        ZOOptimizer([x], lr=0.01, eps=1e-3, update=update, seed=4, adam_eps=1e-12).step(loss)
        finals[update] = x.detach() - x0
    torch.testing.assert_close(finals["momentum"], finals["sgd"], rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(finals["adam"], finals["sign"], rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(finals["sign"].abs(), torch.full((DIM,), 0.01), rtol=1e-4, atol=1e-7)


def test_cons_never_raises_the_batch_loss():
    x, _, loss = _quadratic()
    opt = ZOOptimizer([x], lr=0.3, eps=1e-3, update="cons", seed=0)  # lr large enough that SGD would overshoot
    for _ in range(30):
        before = loss().item()
        opt.step(loss)
        assert loss().item() <= before * (1 + 1e-6)  # float rounding of the undone moves


@pytest.mark.parametrize("n,update,per_step", [(1, "sgd", 2), (4, "sgd", 8), (2, "adam", 4)])
def test_forward_pass_counter(n, update, per_step):
    x, _, loss = _quadratic()
    opt = ZOOptimizer([x], lr=1e-3, update=update, n_directions=n)
    for _ in range(3):
        opt.step(loss)
    assert opt.forward_passes == 3 * per_step


@pytest.mark.parametrize("update", ["sgd", "momentum", "adam"])
def test_state_dict_round_trip_continues_like_an_uninterrupted_run(update):
    def fresh():
        x, _, loss = _quadratic()
        return x, loss, ZOOptimizer([x], lr=0.005, update=update, seed=9, n_directions=2)

    x, loss, opt = fresh()
    for _ in range(10):
        opt.step(loss)
    straight = x.detach().clone()

    x, loss, opt = fresh()
    for _ in range(5):
        opt.step(loss)
    saved_state, saved_x = opt.state_dict(), x.detach().clone()
    x2, loss2, opt2 = fresh()
    with torch.no_grad():
        x2.copy_(saved_x)
    opt2.load_state_dict(saved_state)
    for _ in range(5):
        opt2.step(loss2)
    assert torch.equal(x2.detach(), straight)
    assert opt2.step_count == 10 and opt2.forward_passes == 40


def test_load_state_dict_rejects_a_mismatched_update_rule():
    x, _, _ = _quadratic()
    state = ZOOptimizer([x], update="adam").state_dict()
    with pytest.raises(StateError, match="update='adam'"):
        ZOOptimizer([x], update="sgd").load_state_dict(state)
    with pytest.raises(StateError, match="'zo' entry"):
        ZOOptimizer([x]).load_state_dict({"state": {}, "param_groups": []})


def test_non_finite_loss_skips_the_step_and_restores_the_weights():
    x, _, loss = _quadratic()
    x0 = x.detach().clone()
    opt = ZOOptimizer([x], lr=0.1, eps=1e-3)
    calls = iter([1.0, float("nan")])
    with pytest.warns(ZotuneWarning, match="Non-finite loss"):
        result = opt.step(lambda: next(calls))
    assert math.isnan(result)
    assert opt.consecutive_skips == 1
    torch.testing.assert_close(x.detach(), x0, rtol=0, atol=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        opt.step(loss)
    assert opt.consecutive_skips == 0


@pytest.mark.parametrize(
    "kwargs,exc,pattern",
    [
        ({"lr": -1.0}, ConfigError, r"Invalid lr: -1.0"),
        ({"lr": float("nan")}, ConfigError, r"Invalid lr"),
        ({"eps": 0.0}, ConfigError, r"Invalid eps: 0.0 \(must be a finite number > 0\)"),
        ({"n_directions": 0}, ConfigError, r"Invalid n_directions: 0"),
        ({"weight_decay": -0.1}, ConfigError, r"Invalid weight_decay"),
        ({"seed": -1}, ConfigError, r"Invalid seed"),
        ({"update": "adamw"}, UnknownNameError, r"Did you mean 'adam'"),
        ({"method": "mezzo"}, UnknownNameError, r"Unknown method 'mezzo'"),
        ({"update": "cons", "weight_decay": 0.1}, ConfigError, r"weight_decay=0.1 .* update='cons'"),
        ({"update": "momentum", "momentum": 1.0}, ConfigError, r"Invalid momentum: 1.0"),
        ({"update": "adam", "betas": (0.9, 1.5)}, ConfigError, r"Invalid betas"),
        ({"method_options": {"rho": 0.2}}, ConfigError, r"Unknown option\(s\) \['rho'\] for method 'mezo'"),
    ],
)
def test_bad_arguments_fail_at_construction(kwargs, exc, pattern):
    x, _, _ = _quadratic()
    with pytest.raises(exc, match=pattern):
        ZOOptimizer([x], **kwargs)


def test_no_trainable_parameters_is_an_error():
    frozen = torch.nn.Linear(2, 2).requires_grad_(False)
    with pytest.raises(ConfigError, match="no trainable parameters"):
        ZOOptimizer(frozen)


def test_step_without_closure_is_an_error():
    x, _, _ = _quadratic()
    with pytest.raises(ConfigError, match="closure"):
        ZOOptimizer([x]).step(None)


def test_lr_scheduler_drives_the_learning_rate():
    x, _, loss = _quadratic()
    opt = ZOOptimizer([x], lr=0.01)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    opt.step(loss)
    sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.005)
