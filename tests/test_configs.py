"""Every YAML run config in the repository parses and validates, and its header gives the command."""

from pathlib import Path

import pytest

from zotune.methods import METHODS
from zotune.tasks import TASKS
from zotune.train.config import TrainConfig, load_yaml_config
from zotune.updates import UPDATES

CONFIGS = sorted((Path(__file__).parents[1] / "configs").rglob("*.yaml"))


def test_there_are_configs():
    assert CONFIGS


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_is_valid(path):
    config = TrainConfig.from_dict(load_yaml_config(path))
    TASKS.get(config.task), METHODS.get(config.method), UPDATES.get(config.update)
    assert "zotune train --config" in path.read_text().splitlines()[1]
