"""Seeded parameter perturbation (in place or deferred to forward hooks): the substrate every ZO method shares."""

from zotune.perturb.engine import Block, DirectionFn, PerturbationEngine, StepPlan, gaussian_direction
from zotune.perturb.functional import add_noise, mix_seed
from zotune.perturb.hooks import attach_perturbation_hooks
from zotune.perturb.noise import (
    NOISES,
    Gaussian16Noise,
    GaussianNoise,
    NoiseSource,
    RademacherNoise,
    TorchGaussianNoise,
)

__all__ = [
    "Block",
    "DirectionFn",
    "PerturbationEngine",
    "StepPlan",
    "gaussian_direction",
    "GaussianNoise",
    "Gaussian16Noise",
    "NOISES",
    "NoiseSource",
    "RademacherNoise",
    "TorchGaussianNoise",
    "add_noise",
    "attach_perturbation_hooks",
    "mix_seed",
]
