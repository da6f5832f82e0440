"""Quadratics to measure estimators on: L(x) = x'Hx/2 with H positive definite, a weighted one over a matrix, and
the mean step over trials."""

import torch

DIM = 10


def quadratic(seed=0):
    """``(x, H, loss)``: a parameter x of DIM values and the loss x'Hx/2, from ``seed``."""
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(DIM, DIM, generator=g)
    hessian = a @ a.T / DIM + torch.eye(DIM)
    x = torch.nn.Parameter(torch.randn(DIM, generator=g))
    return x, hessian, (lambda: 0.5 * x @ hessian @ x)


def matrix_quadratic(seed=0, shape=(6, 5)):
    """``(w, loss, gradient)``: a matrix parameter and sum(scale (w - target)^2), from ``seed`` (LOZO's and ZO-Muon's
    tests: their directions are low-rank on matrices)."""
    g = torch.Generator().manual_seed(seed)
    w = torch.nn.Parameter(torch.randn(shape, generator=g))
    target = torch.randn(shape, generator=g)
    scale = torch.rand(shape, generator=g) + 0.5
    return w, (lambda: (scale * (w - target) ** 2).sum()), 2 * scale * (w.detach() - target)


def mean_step(x, loss, build, trials=4000):
    """The mean of ``x0 - x`` after one step of ``build(seed)`` (an lr-1 optimizer over ``[x]``) from the same x0,
    over ``trials`` seeds: the estimator's expectation, to sampling error."""
    x0 = x.detach().clone()
    total = torch.zeros_like(x0)
    for seed in range(trials):
        with torch.no_grad():
            x.copy_(x0)
        build(seed).step(loss)
        total += x0 - x.detach()
    with torch.no_grad():
        x.copy_(x0)
    return total / trials
