"""Method and sampler plug-ins. Each built-in subpackage is imported here explicitly, which registers it."""

from zotune.methods import adalezo, dizo, fzoo, ldsd, lozo, mezo, zo_finetuner, zo_muon
from zotune.methods.base import METHODS, Method, MethodConfig, Probe, build_method, register_method
from zotune.methods.sampling import (
    SAMPLERS,
    Sampler,
    SamplerConfig,
    build_sampler,
    register_sampler,
    route_options,
)

__all__ = [
    "METHODS",
    "SAMPLERS",
    "Method",
    "MethodConfig",
    "Probe",
    "Sampler",
    "SamplerConfig",
    "build_method",
    "build_sampler",
    "register_method",
    "register_sampler",
    "route_options",
    "adalezo",
    "dizo",
    "fzoo",
    "ldsd",
    "lozo",
    "mezo",
    "zo_finetuner",
    "zo_muon",
]
