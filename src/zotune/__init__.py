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
from zotune.methods import METHODS, Method, MethodConfig, register_method
from zotune.optim import ZOOptimizer
from zotune.optim.updates import UPDATES

__version__ = "0.1.0"

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


def __getattr__(name: str):
    # ZOTrainer(-Arguments) import transformers' Trainer (and accelerate): loaded on first use, not with `import zotune`.
    if name in ("ZOTrainer", "ZOTrainingArguments"):
        from zotune.integrations import trainer

        return getattr(trainer, name)
    raise AttributeError(f"module 'zotune' has no attribute {name!r}")
