"""Every YAML run config and bench grid in the repository parses and validates, and its header gives the command."""

from pathlib import Path

import pytest

from zotune.methods import METHODS, SAMPLERS, route_options
from zotune.optim.updates import UPDATES
from zotune.tasks import TASKS
from zotune.train.config import TrainConfig, load_yaml_config

ROOT = Path(__file__).parents[1] / "configs"
GRIDS = sorted((ROOT / "bench").glob("*.yaml"))
CONFIGS = sorted(set(ROOT.rglob("*.yaml")) - set(GRIDS))


def test_there_are_configs():
    assert CONFIGS


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_is_valid(path):
    config = TrainConfig.from_dict(load_yaml_config(path))
    TASKS.get(config.task), UPDATES.get(config.update)
    method = METHODS.get(config.method)
    sampler = SAMPLERS.get(config.sampler or method.sampler)
    method_options, sampler_options = route_options(
        config.method_options, [("method", method.config_cls), ("sampler", sampler.config_cls)])
    method.config_cls(**method_options), sampler.config_cls(**sampler_options)
    assert "zotune train --config" in path.read_text().splitlines()[1]


@pytest.mark.parametrize("path", GRIDS, ids=lambda p: p.name)
def test_bench_grid_is_valid(path):
    from zotune.bench import load_bench_config

    config = load_bench_config(path)  # checks every run's settings, method and task
    assert config.runs()
    assert "zotune bench" in path.read_text().splitlines()[1]


def test_options_may_name_their_owner_and_must_when_two_declare_them():
    from dataclasses import dataclass

    from zotune.errors import ConfigError

    @dataclass
    class A:
        rate: float = 0.0
        only_a: int = 0

    @dataclass
    class B:
        rate: float = 0.0

    owners = [("method 'a'", A), ("sampler 'b'", B)]
    assert route_options({"only_a": 1, "sampler.rate": 2.0, "method.rate": 3.0}, owners) == [
        {"only_a": 1, "rate": 3.0}, {"rate": 2.0}]
    with pytest.raises(ConfigError, match=r"rate \(method.rate or sampler.rate\); name the owner"):
        route_options({"rate": 1.0}, owners)
    with pytest.raises(ConfigError, match=r"Unknown option\(s\) \['sampler.only_a'\]"):
        route_options({"sampler.only_a": 1}, owners)
