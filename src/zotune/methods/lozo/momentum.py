"""LOZO-M (Chen et al., arXiv 2410.07698, section 4): LOZO with momentum kept in low-rank form.

Within a lazy period every step's estimate of a matrix is c U Vᵀ with the period's V, so an exponential average
of the estimates is N Vᵀ with N = β N + (1 − β) Σ c_i U_i (m x r): the momentum costs r (m + n) values a matrix
(N and the V it goes with), not m n. When V is drawn anew the old momentum is carried into the new subspace,
N ← N V_oldᵀ V_new / n. Tensors that are not matrices (norm scales, biases) keep a full average, as in the
public code, which is also followed where the paper is silent: the first step's average is the first estimate
itself (not (1 − β) times it), and weight decay shrinks the weights directly rather than entering the average.
"""

from __future__ import annotations

from typing import Any

import torch

from zotune.perturb.noise import as_matrix

__all__ = ["LowRankMomentum"]


class LowRankMomentum:
    """The update of LOZO-M, used in place of ``sgd`` (``LOZO.update_rule``).

    Args:
        beta: the average's decay β (the paper's 0.9).
    """

    name = "lozo-m"
    uses_weight_decay = True

    def __init__(self, beta: float) -> None:
        self.beta = beta

    @torch.no_grad()
    def update(self, ctx: Any) -> None:
        """One step over the blocks of ``ctx.plan`` (an ``optim.updates.UpdateContext``)."""
        engine, beta = ctx.engine, self.beta
        if ctx.restore is not None:  # the probes' pending restore: the average below reads theta itself
            engine.perturb(ctx.restore[0], ctx.restore[1], ctx.plan)
        for b, scale, weight in ctx.plan:
            block = engine.blocks[b]
            param, state = block.param, ctx.state[block.param]
            terms = ctx.block_terms(scale, weight, 1.0)  # (seed, c_i): each direction's share of the estimate
            factors = [engine.factors(seed, block) for seed, _ in terms]
            master = param if param.dtype == torch.float32 else param.float()
            if ctx.weight_decay and block.decay:
                master.mul_(1.0 - ctx.lr * ctx.weight_decay)
            if factors and all(f is not None for f in factors):
                v = factors[0][1]
                u = sum(coef * f[0] for (_, coef), f in zip(terms, factors))
                average = state.get("lozo_n")
                if average is None:
                    average = u
                else:
                    if not torch.equal(state["lozo_v"], v):  # a new lazy period
                        average = average @ (state["lozo_v"].T @ v) / v.shape[0]
                    average = average.mul(beta).add_(u, alpha=1.0 - beta)
                state["lozo_n"], state["lozo_v"] = average, v
                master.view(as_matrix(param.shape)).addmm_(average, v.T, alpha=-ctx.lr)
            else:
                estimate = engine.combination(block, terms)
                average = state.get("lozo_m")
                average = estimate if average is None else average.mul_(beta).add_(estimate, alpha=1.0 - beta)
                state["lozo_m"] = average
                master.add_(average, alpha=-ctx.lr)
            if master is not param:
                param.copy_(master)

    def __repr__(self) -> str:
        return f"LowRankMomentum(beta={self.beta})"
