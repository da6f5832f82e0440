from zotune.methods.base import register_method
from zotune.methods.mezo.config import MeZOConfig
from zotune.methods.mezo.method import MeZO

__all__ = ["MeZO", "MeZOConfig"]

register_method("mezo", config_cls=MeZOConfig, method_cls=MeZO)
