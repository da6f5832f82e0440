"""ZO-Muon's step (Lang et al., arXiv 2602.17155): each matrix moves along P msign(Ĝ).

For a matrix block with the period's projection P (m x k) and the step's directions P Ψ_i, the estimate is
P Ĝ with Ĝ = sum_i c_i Ψ_i (k x n, c_i each direction's share: g_i / N), so Ĝ is the gradient estimate in the
subspace's coordinates. msign(Ĝ) = U Vᵀ of Ĝ's SVD U S Vᵀ is approximated by Newton-Schulz iterations
(``newton_schulz``), and W <- W - lr P msign(Ĝ): every direction of the subspace estimate moves by the same lr,
whatever its singular value. Tensors that are not matrices take a plain SGD step on their full Gaussian estimate
at the config's ``vector_lr``. Weight decay shrinks the weights by (1 - lr wd) first, as ``sgd`` does.
"""

from __future__ import annotations

from typing import Any

import torch

from zotune.perturb.noise import as_matrix

__all__ = ["OrthogonalizedUpdate", "newton_schulz"]

# The quintic iteration's coefficients from Muon (Jordan et al. 2024, kellerjordan.github.io/posts/muon): chosen
# to push every singular value of a matrix scaled to spectral norm <= 1 towards 1 in few steps, to within about
# [0.7, 1.2] after 5, rather than to converge exactly.
_NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)


def newton_schulz(matrix: torch.Tensor, steps: int) -> torch.Tensor:
    """An approximation of ``U Vᵀ`` (U S Vᵀ the SVD of ``matrix``) by ``steps`` quintic Newton-Schulz iterations,
    in float32. The matrix is first divided by its Frobenius norm (an upper bound of its spectral norm)."""
    a, b, c = _NS_COEFFICIENTS
    x = matrix.float()
    wide = x.shape[0] <= x.shape[1]
    if not wide:  # iterate on the smaller Gram matrix
        x = x.T
    x = x / (torch.linalg.matrix_norm(x) + 1e-7)
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x if wide else x.T


class OrthogonalizedUpdate:
    """The update of ZO-Muon, used in place of ``sgd`` (``ZOMuon.update_rule``).

    Args:
        ns_steps: Newton-Schulz iterations.
        vector_lr: the step size of tensors that are not matrices.
    """

    name = "zo-muon"
    uses_weight_decay = True

    def __init__(self, ns_steps: int, vector_lr: float) -> None:
        self.ns_steps, self.vector_lr = ns_steps, vector_lr

    @torch.no_grad()
    def update(self, ctx: Any) -> None:
        """One step over the blocks of ``ctx.plan`` (an ``optim.updates.UpdateContext``)."""
        engine = ctx.engine
        if ctx.restore is not None:  # the last probe's pending restore: the step below is not linear in it
            engine.perturb(ctx.restore[0], ctx.restore[1], ctx.plan)
        for b, scale, weight in ctx.plan:
            block = engine.blocks[b]
            param = block.param
            terms = ctx.block_terms(scale, weight, 1.0)
            master = param if param.dtype == torch.float32 else param.float()
            if ctx.weight_decay and block.decay:
                master.mul_(1.0 - ctx.lr * ctx.weight_decay)
            shape = as_matrix(param.shape)
            if shape is not None:
                factors = [engine.factors(seed, block) for seed, _ in terms]
                basis = factors[0][0]
                coords = sum(coef * psi_t for (_, coef), (_, psi_t) in zip(terms, factors))  # Ĝᵀ, n x k
                step = newton_schulz(coords.T, self.ns_steps)
                master.view(shape).addmm_(basis, step, alpha=-ctx.lr)
            elif self.vector_lr:
                master.add_(engine.combination(block, terms), alpha=-self.vector_lr)
            if master is not param:
                param.copy_(master)

    def __repr__(self) -> str:
        return f"OrthogonalizedUpdate(ns_steps={self.ns_steps}, vector_lr={self.vector_lr})"
