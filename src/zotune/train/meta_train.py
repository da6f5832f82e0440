"""Deprecated: ZO Fine-tuner's meta-training recipe moved to ``zotune.methods.zo_finetuner.recipe`` (0.2.0)."""

import warnings

from zotune.methods.zo_finetuner.recipe import MetaTrainConfig, MetaTrainResult, meta_train

__all__ = ["MetaTrainConfig", "MetaTrainResult", "meta_train"]

warnings.warn("zotune.train.meta_train moved to zotune.methods.zo_finetuner.recipe; the old path will be removed",
              FutureWarning, stacklevel=2)
