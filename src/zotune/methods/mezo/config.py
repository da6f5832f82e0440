"""MeZO's config: the method has no options of its own (lr, eps, update rule live on the optimizer)."""

from __future__ import annotations

from dataclasses import dataclass

from zotune.methods.base import MethodConfig

__all__ = ["MeZOConfig"]


@dataclass
class MeZOConfig(MethodConfig):
    """MeZO (arXiv 2305.17333): SPSA over every trainable block with the seed trick."""
