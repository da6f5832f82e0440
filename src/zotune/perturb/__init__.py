"""Seeded, in-place parameter perturbation: the substrate every ZO method shares."""

from zotune.perturb.engine import Block, DirectionFn, PerturbationEngine, StepPlan, gaussian_direction
from zotune.perturb.functional import add_noise, mix_seed

__all__ = [
    "Block",
    "DirectionFn",
    "PerturbationEngine",
    "StepPlan",
    "gaussian_direction",
    "add_noise",
    "mix_seed",
]
