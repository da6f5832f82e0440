"""LDSD: registers the ``ldsd`` method (a learned direction-sampling policy, best of K candidates)."""

from zotune.methods.base import register_method
from zotune.methods.ldsd.config import LDSDConfig
from zotune.methods.ldsd.method import LDSD

__all__ = ["LDSD", "LDSDConfig"]

register_method("ldsd", config_cls=LDSDConfig, method_cls=LDSD)
