"""ZO-Muon (arXiv 2602.17155): one-sided probes P Ψ_i in a random subspace of each matrix, P kept for `interval`
steps, and the step P msign(Ĝ)."""

import pytest
import torch

from quadratic import matrix_quadratic, mean_step
from zotune import ZOOptimizer
from zotune.errors import ConfigError
from zotune.methods.zo_muon.noise import _SubspaceReader, orthonormal_basis
from zotune.methods.zo_muon.update import newton_schulz


@pytest.mark.parametrize("shape", [(8, 32), (32, 8), (5, 5)])
def test_newton_schulz_keeps_the_singular_vectors_and_brings_the_singular_values_near_1(shape):
    g = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    u, s, vh = torch.linalg.svd(g, full_matrices=False)
    out = newton_schulz(g, 5)
    assert out.shape == g.shape
    inner = u.T @ out @ vh.T  # diagonal when out = U S' Vᵀ
    off = inner - torch.diag(torch.diagonal(inner))
    assert off.abs().max() < 1e-4
    assert 0.6 < torch.diagonal(inner).min() and torch.diagonal(inner).max() < 1.25
    assert s.min() / s.max() < 0.6  # the input's own singular values would fail the check above


def test_the_projection_is_orthonormal_haar_and_capped_at_the_row_count():
    p = orthonormal_basis(20, 4, seed=7)
    torch.testing.assert_close(p.T @ p, torch.eye(4), atol=1e-5, rtol=0)
    assert torch.equal(p, orthonormal_basis(20, 4, seed=7)) and not torch.equal(p, orthonormal_basis(20, 4, seed=8))
    assert orthonormal_basis(3, 64, seed=0).shape == (3, 3)
    # Haar: the sign fix makes E[P] = 0 (QR alone would favour a positive diagonal)
    mean = sum(orthonormal_basis(5, 2, seed=s) for s in range(2000)) / 2000
    assert mean.abs().max() < 0.08


def test_the_subspace_estimate_is_k_over_m_times_the_gradient_on_a_quadratic():
    """With z = P Ψ, P Haar (m x k) and Ψ Gaussian, E[z zᵀ] = (k / m) I, and the one-sided difference's ε term is
    odd in z: without the orthogonalisation the expected step is (k / m) times the gradient (no 1/k in the paper's
    estimate either). 3000 trials at k = 2, m = 6."""
    w, loss, grad = matrix_quadratic()
    mean = mean_step(w, loss, lambda seed: ZOOptimizer(
        [w], method="zo-muon", lr=1.0, eps=1e-3, seed=seed,
        method_options={"rank": 2, "interval": 1, "perturbations": 1, "orthogonalize": False}), trials=3000)
    expected = grad * 2 / 6
    assert (mean - expected).norm() / expected.norm() < 0.15
    assert torch.nn.functional.cosine_similarity(mean.flatten(), expected.flatten(), dim=0) > 0.98


@pytest.mark.parametrize("orthogonalize", [True, False])
def test_a_step_is_w_minus_lr_p_msign_of_the_subspace_estimate(orthogonalize):
    w, loss, _ = matrix_quadratic()
    bias = torch.nn.Parameter(torch.ones(5))
    start, bias_start = w.detach().clone(), bias.detach().clone()
    opt = ZOOptimizer([("w", w), ("bias", bias)], method="zo-muon", lr=0.05, eps=1e-3, seed=2,
                      method_options={"rank": 3, "perturbations": 3, "orthogonalize": orthogonalize,
                                      "vector_lr": 0.01})
    opt.step(lambda: loss() + bias.pow(2).sum())
    probes = opt.last_probes
    assert len(probes) == 3 and opt.forward_passes == 4
    block, vector = opt.engine.blocks
    factors = [opt.engine.factors(p.seed, block) for p in probes]
    p_basis = factors[0][0]
    g_hat = sum(p.projected_grad / 3 * psi_t.T for p, (_, psi_t) in zip(probes, factors))
    step = newton_schulz(g_hat, 5) if orthogonalize else g_hat
    torch.testing.assert_close(w.detach(), start - 0.05 * p_basis @ step, rtol=1e-5, atol=1e-6)
    estimate = sum(p.projected_grad / 3 * opt.engine.noise(p.seed, vector) for p in probes)
    vector_lr = 0.01 if orthogonalize else 0.05  # without the orthogonalisation the update rule steps every tensor
    torch.testing.assert_close(bias.detach(), bias_start - vector_lr * estimate, rtol=1e-5, atol=1e-6)


def _bases(opt, steps, loss):
    out = []
    for _ in range(steps):
        opt.step(loss)
        out.append(opt.engine.factors(opt.last_probes[0].seed, opt.engine.blocks[0])[0].clone())
    return out


def test_p_is_kept_for_interval_steps_drawn_anew_after_them_and_survives_a_state_dict_round_trip():
    w, loss, _ = matrix_quadratic()
    options = {"rank": 2, "interval": 3, "perturbations": 2}
    opt = ZOOptimizer([w], method="zo-muon", lr=1e-3, seed=1, method_options=options)
    bases = _bases(opt, 4, loss)
    assert torch.equal(bases[0], bases[1]) and torch.equal(bases[0], bases[2])
    assert not torch.allclose(bases[2], bases[3])
    state = opt.state_dict()
    straight = _bases(opt, 3, loss)
    w2, loss2, _ = matrix_quadratic()
    resumed = ZOOptimizer([w2], method="zo-muon", lr=1e-3, seed=99, method_options=options)
    resumed.load_state_dict(state)
    assert all(torch.equal(a, b) for a, b in zip(straight, _bases(resumed, 3, loss2)))


@pytest.mark.parametrize("method, options", [("zo-muon", {"interval": 2, "rank": 4, "vector_lr": 1e-3}),
                                             ("lozo", {"interval": 2})])
def test_in_place_and_deferred_low_rank_probes_give_the_same_losses(method, options):
    losses = {}
    for mode in ("in_place", "deferred"):
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(8, 6), torch.nn.Tanh(), torch.nn.Linear(6, 1))
        x = torch.randn(16, 8, generator=torch.Generator().manual_seed(1))
        opt = ZOOptimizer(model, method=method, lr=1e-2, eps=1e-3, seed=2, perturbation=mode,
                          method_options=options)
        for _ in range(5):
            opt.step(lambda: model(x).pow(2).mean())
        losses[mode] = [loss for probe in opt.last_probes for loss in (probe.at_theta or 0.0, *probe.losses)]
    torch.testing.assert_close(torch.tensor(losses["in_place"]), torch.tensor(losses["deferred"]),
                               rtol=1e-5, atol=1e-6)


def test_a_step_never_forms_the_m_by_n_direction(monkeypatch):
    """Probes and restores are addmm_ passes over the matrix, the step one more: P Ψ is only formed by fill()."""
    def forbidden(self, out):
        raise AssertionError("formed P Psi")

    monkeypatch.setattr(_SubspaceReader, "fill", forbidden)
    w, loss, _ = matrix_quadratic()
    opt = ZOOptimizer([w], method="zo-muon", lr=1e-3)
    for _ in range(3):
        opt.step(loss)
    assert opt.step_count == 3


@pytest.mark.parametrize("settings, message", [
    ({"method_options": {"rank": 0}}, "Invalid rank"),
    ({"method_options": {"interval": 0}}, "Invalid interval"),
    ({"method_options": {"perturbations": 0}}, "Invalid perturbations"),
    ({"method_options": {"ns_steps": 0}}, "Invalid ns_steps"),
    ({"method_options": {"vector_lr": -1.0}}, "Invalid vector_lr"),
    ({"n_directions": 2}, "takes its direction count from its perturbations option"),
    ({"update": "adam"}, "use update sgd, not 'adam' \\(or set orthogonalize to false\\)"),
])
def test_bad_settings_are_refused_in_one_line(settings, message):
    w = torch.nn.Parameter(torch.zeros(3, 3))
    with pytest.raises(ConfigError, match=message) as error:
        ZOOptimizer([w], method="zo-muon", **settings)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("method", ["zo-muon", "lozo"])
@pytest.mark.parametrize("seed", [-1, 2**63, "7", True, None])
def test_a_corrupt_period_seed_is_refused(method, seed):
    from zotune.errors import StateError

    opt = ZOOptimizer([torch.nn.Parameter(torch.zeros(3, 3))], method=method)
    with pytest.raises(StateError, match=f"Corrupt {method} state: period_seed is"):
        opt.method.load_state_dict({"period_seed": seed})
