"""FZOO (arXiv 2506.09034): N one-sided Rademacher probes around one unperturbed loss, normalised by the spread of
the probe losses."""

import statistics

import pytest
import torch

from quadratic import mean_step
from quadratic import quadratic as _quadratic
from zotune import ZOOptimizer
from zotune.errors import ConfigError


def test_a_step_is_n_plus_one_forward_passes_the_unperturbed_loss_first():
    x, _, loss = _quadratic()
    at_theta = float(loss())
    opt = ZOOptimizer([x], method="fzoo", lr=1e-4, eps=1e-3, method_options={"perturbations": 5})
    reported = opt.step(loss)
    assert opt.forward_passes == 6 and len(opt.last_record.losses) == 6
    assert opt.last_record.losses[0] == at_theta and reported == at_theta  # the step reports L(theta) itself
    probe_losses = opt.last_record.losses[1:]
    assert opt.method.last_sigma == statistics.stdev(probe_losses)


def test_with_one_probe_and_no_normalisation_it_is_one_sided_spsa_exactly():
    x, _, loss = _quadratic()
    before = x.detach().clone()
    lr, eps = 0.01, 1e-3
    opt = ZOOptimizer([x], method="fzoo", lr=lr, eps=eps, fuse_restore=False,
                      method_options={"perturbations": 1, "normalize": False})
    opt.step(loss)
    l0, l1 = opt.last_record.losses
    (g,) = opt.last_record.grads
    assert g == (l1 - l0) / eps
    (probe,) = opt.last_probes
    u = opt.engine.noise(probe.seed, opt.engine.blocks[0]).clone()
    assert set(u.unique().tolist()) == {-1.0, 1.0}  # Rademacher directions
    # theta + eps u - eps u - lr g u, in float32 as the engine computes it
    expected = before.clone().add_(u, alpha=eps).add_(u, alpha=-eps).add_(u, alpha=-lr * g)
    assert torch.equal(x.detach(), expected)


def test_the_unnormalised_estimate_is_unbiased_on_a_quadratic():
    """E[(L(x + eps u) - L(x)) / eps * u] = grad + eps/2 E[(u'Hu) u], and the last term is 0 for Rademacher u
    (odd moments vanish): one-sided, yet unbiased on a quadratic. 4000 trials of N = 4."""
    x, hessian, loss = _quadratic()
    true_grad = hessian @ x.detach()
    mean = mean_step(x, loss, lambda seed: ZOOptimizer([x], method="fzoo", lr=1.0, eps=1e-3, seed=seed,
                                                       method_options={"perturbations": 4, "normalize": False}))
    assert (mean - true_grad).norm() / true_grad.norm() < 0.1
    assert torch.nn.functional.cosine_similarity(mean, true_grad, dim=0) > 0.99


def test_the_normalised_step_divides_by_the_loss_deviation():
    runs = {}
    for normalize in (True, False):
        x, _, loss = _quadratic()
        before = x.detach().clone()
        opt = ZOOptimizer([x], method="fzoo", lr=1e-3, eps=1e-3, seed=7,
                          method_options={"perturbations": 6, "normalize": normalize})
        opt.step(loss)
        runs[normalize] = (x.detach() - before, opt)
    (moved_norm, opt), (moved_plain, _) = runs[True], runs[False]
    sigma = statistics.stdev(opt.last_record.losses[1:])
    torch.testing.assert_close(moved_norm, moved_plain / sigma, rtol=1e-4, atol=1e-7)


def test_it_trains_a_quadratic_in_few_passes():
    x, _, loss = _quadratic()
    start = float(loss())
    opt = ZOOptimizer([x], method="fzoo", lr=2e-4, eps=1e-3, seed=0)
    for _ in range(200):
        opt.step(loss)
    assert float(loss()) < 0.01 * start


@pytest.mark.parametrize("settings, message", [
    ({"n_directions": 2}, "takes its direction count from its perturbations option"),
    ({"method_options": {"perturbations": 1}}, "needs perturbations >= 2"),
    ({"method_options": {"perturbations": 0}}, "Invalid perturbations"),
    ({"method_options": {"sigma_floor": 0.0}}, "Invalid sigma_floor"),
])
def test_settings_fzoo_cannot_honour_are_refused(settings, message):
    x = torch.nn.Parameter(torch.zeros(3))
    with pytest.raises(ConfigError, match=message):
        ZOOptimizer([x], method="fzoo", **settings)
    ZOOptimizer([x], method="fzoo", noise="rademacher")  # naming its own distribution is fine


@pytest.mark.parametrize("method, extra", [("fzoo", ["--fzoo-perturbations", "3"]),
                                           ("lozo", ["--lozo-rank", "1", "--n-directions", "2"])])
@pytest.mark.parametrize("peft", ["lora", "prefix"])
def test_the_new_estimators_train_adapters_and_replay_bitwise(tiny_model_dir, tiny_data_dir, tmp_path, method, extra,
                                                              peft):
    """FZOO and LOZO on peft adapters (LoRA's A and B are matrices LOZO perturbs in low rank), through the CLI,
    and the seed log rebuilds the adapter bitwise."""
    import json

    from zotune.cli import main

    out = tmp_path / "run"
    args = ["train", "--model", str(tiny_model_dir), "--data-dir", str(tiny_data_dir), "--output-dir", str(out),
            "--method", method, "--peft", peft, "--steps", "3", "--batch-size", "8", "--num-train", "32",
            "--num-dev", "8", "--num-eval", "8", "--eval-steps", "3", "--no-progress", "--autocast", "none", *extra]
    assert main(args) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 3
    assert main(["replay", "--log", str(out / "seeds.jsonl"), "--out", str(tmp_path / "replayed"),
                 "--no-progress"]) == 0
