"""MeZO: the reference method. Every hook default of ``Method`` is MeZO's behaviour, so nothing is overridden."""

from __future__ import annotations

from zotune.methods.base import Method

__all__ = ["MeZO"]


class MeZO(Method):
    r"""Memory-efficient zeroth-order optimisation (Malladi et al., 2023, https://arxiv.org/abs/2305.17333).

    .. math::
        \begin{aligned}
        &z \sim \mathcal N(0, I) \text{ regenerated from a seed } s \\
        &g = \frac{L(\theta + \epsilon z) - L(\theta - \epsilon z)}{2\epsilon} \\
        &\theta \leftarrow \theta - \eta\,(g z + \lambda \theta)
        \end{aligned}

    The update rule (``sgd`` here; ``momentum``, ``sign``, ``cons``, ``adam`` on request) and n-SPSA are
    handled by :class:`zotune.ZOOptimizer`.
    """
