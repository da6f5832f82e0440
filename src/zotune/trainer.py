"""The first release's import path of ``ZOTrainer``, kept as an alias: import it from ``zotune`` (or
``zotune.integrations.trainer``) instead."""

import warnings

from zotune.integrations.trainer import ZOTrainer, ZOTrainingArguments

__all__ = ["ZOTrainer", "ZOTrainingArguments"]

warnings.warn("zotune.trainer is deprecated and will be removed: use `from zotune import ZOTrainer, "
              "ZOTrainingArguments`", FutureWarning, stacklevel=2)
