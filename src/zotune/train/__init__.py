"""The training recipe: ``TrainConfig`` and the ``train`` loop, with its logging, checkpoints and plots."""

from zotune.train.config import TrainConfig, load_yaml_config
from zotune.train.loop import TrainResult, train

__all__ = ["TrainConfig", "TrainResult", "load_yaml_config", "train"]
