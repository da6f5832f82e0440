"""zotune: memory-efficient zeroth-order fine-tuning of language models."""

from zotune.errors import (
    AssetError,
    ConfigError,
    DataError,
    NonFiniteLossError,
    StateError,
    UnknownNameError,
    ZotuneError,
    ZotuneWarning,
)

__version__ = "0.3.0"

__all__ = [
    "ZOOptimizer",
    "METHODS",
    "UPDATES",
    "Method",
    "MethodConfig",
    "register_method",
    "ZotuneError",
    "ConfigError",
    "DataError",
    "AssetError",
    "NonFiniteLossError",
    "StateError",
    "UnknownNameError",
    "ZotuneWarning",
    "ZOTrainer",
    "ZOTrainingArguments",
    "__version__",
]


# Public names loaded on first use: ``import zotune`` (and the ``zotune`` command, before it can catch Ctrl-C)
# loads neither torch nor transformers' Trainer.
_LAZY = {"ZOOptimizer": "zotune.optim", "METHODS": "zotune.methods", "Method": "zotune.methods",
         "MethodConfig": "zotune.methods", "register_method": "zotune.methods", "UPDATES": "zotune.optim.updates",
         "ZOTrainer": "zotune.integrations.trainer", "ZOTrainingArguments": "zotune.integrations.trainer"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'zotune' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
