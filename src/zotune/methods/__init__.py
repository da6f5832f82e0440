"""Method plug-ins. Each built-in subpackage is imported here explicitly, which registers it."""

from zotune.methods import mezo
from zotune.methods.base import METHODS, Method, MethodConfig, Probe, build_method, register_method

__all__ = ["METHODS", "Method", "MethodConfig", "Probe", "build_method", "register_method", "mezo"]
