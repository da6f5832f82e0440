"""LOZO (arXiv 2410.07698): rank-r perturbations U Vᵀ of each matrix, V kept for `interval` steps."""

import pytest
import torch

from quadratic import matrix_quadratic, mean_step
from zotune import ZOOptimizer
from zotune.errors import ConfigError
from zotune.methods.lozo.noise import _LowRankReader


def test_the_estimate_is_r_times_the_gradient_on_a_quadratic():
    """E[z zᵀ] = r I for z = U Vᵀ with fresh U and V (interval 1): the expected step is r times the gradient (the
    public code has no 1/r), and central differences are exact on a quadratic. 3000 trials at r = 2."""
    w, loss, grad = matrix_quadratic()
    mean = mean_step(w, loss, lambda seed: ZOOptimizer([w], method="lozo", lr=1.0, eps=1e-3, seed=seed,
                                                       method_options={"rank": 2, "interval": 1}), trials=3000)
    assert (mean - 2 * grad).norm() / (2 * grad).norm() < 0.12
    assert torch.nn.functional.cosine_similarity(mean.flatten(), grad.flatten(), dim=0) > 0.99


def _directions(opt, steps, loss):
    out = []
    for _ in range(steps):
        opt.step(loss)
        (probe,) = opt.last_probes
        out.append(opt.engine.noise(probe.seed, opt.engine.blocks[0]).clone())
    return out


def test_v_is_kept_for_interval_steps_and_drawn_anew_after_them():
    w, loss, _ = matrix_quadratic()
    opt = ZOOptimizer([w], method="lozo", lr=1e-3, eps=1e-3, seed=1, method_options={"rank": 2, "interval": 4})
    z = _directions(opt, 8, loss)
    first, second = torch.cat(z[:4]), torch.cat(z[4:])  # rows of every direction of a period
    assert torch.linalg.matrix_rank(first) == 2 and torch.linalg.matrix_rank(second) == 2  # one V each
    assert torch.linalg.matrix_rank(torch.cat([first, second])) == 4  # two different V
    assert not torch.allclose(z[0], z[1])  # U is drawn every step


def test_the_lazy_v_survives_a_state_dict_round_trip():
    w, loss, _ = matrix_quadratic()
    opt = ZOOptimizer([w], method="lozo", lr=1e-3, eps=1e-3, seed=1, method_options={"interval": 4})
    _directions(opt, 2, loss)
    state = opt.state_dict()
    straight = _directions(opt, 2, loss)
    w2, loss2, _ = matrix_quadratic()
    resumed = ZOOptimizer([w2], method="lozo", lr=1e-3, eps=1e-3, seed=99, method_options={"interval": 4})
    resumed.load_state_dict(state)
    with torch.no_grad():
        w2.copy_(w.detach())  # the directions depend on the seeds only, not on the weights
    again = _directions(resumed, 2, loss2)
    assert all(torch.equal(a, b) for a, b in zip(straight, again))


def test_an_sgd_step_never_forms_the_m_by_n_direction(monkeypatch):
    """Probes, restores and the fused update are addmm_ passes over the matrix: U Vᵀ is only formed by fill(),
    which the elementwise rules need."""
    def forbidden(self, out):
        raise AssertionError("formed U V^T")

    monkeypatch.setattr(_LowRankReader, "fill", forbidden)
    w, loss, _ = matrix_quadratic()
    opt = ZOOptimizer([w], method="lozo", lr=1e-3, eps=1e-3)
    for _ in range(3):
        opt.step(loss)
    assert opt.step_count == 3


@pytest.mark.parametrize("options, message", [({"rank": 0}, "Invalid rank"), ({"interval": 0}, "Invalid interval"),
                                              ({"beta": 1.0}, "Invalid beta")])
def test_bad_options_are_refused(options, message):
    w = torch.nn.Parameter(torch.zeros(3, 3))
    with pytest.raises(ConfigError, match=message):
        ZOOptimizer([w], method="lozo", method_options=options)


def test_deferred_low_rank_probes_never_build_a_perturbed_weight(monkeypatch):
    """With bf16 weights (deferred), a linear or embedding layer gets (x V) Uᵀ added to its output: the engine's
    theta + eps z copy is only made for the other tensors (norm scales, biases)."""
    from zotune.perturb.engine import PerturbationEngine

    built = []
    real = PerturbationEngine.perturbed

    def watched(self, block):
        out = real(self, block)
        if out is not None:
            built.append(block.param.dim())
        return out

    monkeypatch.setattr(PerturbationEngine, "perturbed", watched)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Embedding(30, 8), torch.nn.Linear(8, 6), torch.nn.LayerNorm(6),
                                torch.nn.Linear(6, 1)).to(torch.bfloat16)
    ids = torch.randint(0, 30, (4, 5), generator=torch.Generator().manual_seed(1))
    opt = ZOOptimizer(model, method="lozo", lr=1e-2, eps=1e-2, seed=0)
    assert opt.perturbation == "deferred"
    before = [p.detach().clone() for p in model.parameters()]
    for _ in range(3):
        opt.step(lambda: model(ids).float().pow(2).mean())
    assert built and set(built) == {1}  # biases and the norm only
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters()))  # the updates did land


def test_low_rank_output_equals_the_perturbed_weight_to_rounding():
    from zotune.perturb.hooks import _low_rank_output

    torch.manual_seed(0)
    linear, embedding = torch.nn.Linear(7, 5), torch.nn.Embedding(11, 4)
    u, v = torch.randn(5, 2), torch.randn(7, 2)
    x = torch.randn(3, 7)
    with torch.no_grad():
        expected = torch.nn.functional.linear(x, linear.weight + 0.3 * u @ v.T, linear.bias)
        torch.testing.assert_close(_low_rank_output(linear, (x,), linear(x), [(0.3, u, v)]), expected)
        ids = torch.tensor([[1, 4, 10]])
        ue, ve = torch.randn(11, 2), torch.randn(4, 2)
        expected = torch.nn.functional.embedding(ids, embedding.weight - 0.5 * ue @ ve.T)
        torch.testing.assert_close(_low_rank_output(embedding, (ids,), embedding(ids), [(-0.5, ue, ve)]), expected)


def _lozo_m_against_a_dense_average(steps, interval, beta=0.9, lr=1e-2):
    """LOZO-M's weights after ``steps`` steps, and the same run's weights from a dense m x n average of the same
    estimates (each c U Vᵀ formed whole), carrying the average into a new V's subspace as the paper does."""
    w, loss, _ = matrix_quadratic()
    start = w.detach().clone()
    opt = ZOOptimizer([w], method="lozo", lr=lr, eps=1e-3, seed=4,
                      method_options={"rank": 2, "interval": interval, "beta": beta})
    dense, average, v_before = start.clone(), None, None
    for _ in range(steps):
        opt.step(loss)
        (probe,) = opt.last_probes
        u, v = opt.engine.factors(probe.seed, opt.engine.blocks[0])
        estimate = probe.projected_grad * u @ v.T
        if average is None:
            average = estimate
        else:
            if not torch.equal(v, v_before):  # a new V: N V_oldᵀ V_new / n as N's, so M V_new V_newᵀ / n
                average = average @ v @ v.T / v.shape[0]
            average = beta * average + (1 - beta) * estimate
        v_before = v
        dense -= lr * average
    return w.detach(), dense


def test_lozo_m_equals_a_dense_momentum_of_the_same_estimates():
    """Within a period, and across two period changes, the low-rank N Vᵀ is the exponential average of the
    estimates c U Vᵀ, formed here whole (to float rounding)."""
    low_rank, dense = _lozo_m_against_a_dense_average(steps=10, interval=4)
    torch.testing.assert_close(low_rank, dense, rtol=1e-4, atol=1e-5)


def test_lozo_m_keeps_r_times_m_plus_n_values_a_matrix_and_composes_with_sgd_only():
    w, loss, _ = matrix_quadratic(shape=(6, 5))
    bias = torch.nn.Parameter(torch.zeros(5))
    opt = ZOOptimizer([("w", w), ("bias", bias)], method="lozo", lr=1e-3, method_options={"rank": 2, "beta": 0.9})
    opt.step(loss)
    assert {k: tuple(t.shape) for k, t in opt.state[w].items()} == {"lozo_n": (6, 2), "lozo_v": (5, 2)}
    assert {k: tuple(t.shape) for k, t in opt.state[bias].items()} == {"lozo_m": (5,)}  # a vector: a full average
    with pytest.raises(ConfigError, match="LOZO-M .* use update sgd, not 'momentum'"):
        ZOOptimizer([w], method="lozo", update="momentum", method_options={"beta": 0.9})


def test_lozo_m_with_beta_0_is_lozo_bitwise():
    runs = []
    for options in ({}, {"beta": 0.0}):
        w, loss, _ = matrix_quadratic()
        opt = ZOOptimizer([w], method="lozo", lr=1e-2, seed=5, method_options=options)
        for _ in range(5):
            opt.step(loss)
        runs.append(w.detach().clone())
    assert torch.equal(*runs)
