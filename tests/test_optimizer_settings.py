"""Every ZOOptimizer setting can be given from the command line and the YAML, and reaches the optimizer."""

import json

import pytest

from hostile import expect_one_line_error, train_args
from zotune.cli import main


def _optimizer_header(out):
    return json.loads((out / "seeds.jsonl").read_text().splitlines()[0])["optimizer"]


@pytest.mark.parametrize("flags,expected", [
    (["--update", "momentum", "--momentum", "0.5"], {"update": "momentum", "momentum": 0.5}),
    (["--update", "adam", "--betas", "0.8,0.99", "--adam-eps", "1e-6"],
     {"update": "adam", "betas": [0.8, 0.99], "adam_eps": 1e-6}),
    (["--perturbation", "deferred", "--no-fuse-restore"], {"perturbation": "deferred", "fuse_restore": False}),
])
def test_optimizer_flags_reach_the_optimizer(flags, expected, run, tiny_model_dir):
    assert main(train_args(tiny_model_dir, run / "data", run / "new", *flags)) == 0
    header = _optimizer_header(run / "new")
    assert {key: header[key] for key in expected} == expected


def test_optimizer_settings_from_yaml(run, tiny_model_dir):
    config = run / "adam.yaml"
    config.write_text("update: adam\nbetas: [0.7, 0.9]\nadam_eps: 1.0e-7\nperturbation: in_place\n")
    assert main([*train_args(tiny_model_dir, run / "data", run / "new"), "--config", str(config)]) == 0
    header = _optimizer_header(run / "new")
    assert (header["betas"], header["adam_eps"], header["perturbation"]) == ([0.7, 0.9], 1e-7, "in_place")


@pytest.mark.parametrize("flags,message", [
    (["--momentum", "0.5"], "momentum does not apply to update 'sgd' (only to: momentum)"),
    (["--update", "momentum", "--betas", "0.9,0.9"], "betas does not apply to update 'momentum' (only to: adam)"),
    (["--update", "momentum", "--momentum", "1"], "Invalid momentum: 1.0 (must be a number in [0, 1))"),
    (["--update", "adam", "--betas", "0.9"], "Invalid betas: [0.9] (must be two numbers in [0, 1))"),
    (["--update", "adam", "--adam-eps", "inf"], "Invalid adam_eps: inf"),
    (["--perturbation", "sideways"], "Invalid perturbation: 'sideways' (one of auto, in_place, deferred)"),
])
def test_bad_optimizer_settings_are_one_line_errors(flags, message, run, tiny_model_dir, capsys):
    assert main(train_args(tiny_model_dir, run / "data", run / "new", *flags)) == 2
    expect_one_line_error(capsys, message)
    assert not (run / "new").exists()


def test_a_betas_flag_that_is_not_numbers_is_a_one_line_error(run, tiny_model_dir, capsys):
    with pytest.raises(SystemExit) as info:  # argparse's own exit, in zotune's one-line style
        main(train_args(tiny_model_dir, run / "data", run / "new", "--update", "adam", "--betas", "0.9,x"))
    assert info.value.code == 2
    expect_one_line_error(capsys, "argument --betas: expected comma-separated numbers, got '0.9,x'")


def test_every_zoconfig_setting_has_a_train_setting():
    """So a setting added to ZOConfig cannot be forgotten on the command line and in the YAML."""
    import dataclasses

    from zotune.optim import ZOConfig
    from zotune.train.config import TrainConfig

    train = {f.name for f in dataclasses.fields(TrainConfig)}
    # direction_parallel is what `--parallel directions` turns on under torchrun
    missing = {f.name for f in dataclasses.fields(ZOConfig)} - train - {"direction_parallel"}
    assert not missing
    given = TrainConfig(update="adam", betas=[0.8, 0.9], adam_eps=1e-7, perturbation="in_place", lr=3e-4,
                        fuse_restore=False, noise="rademacher", n_directions=2, seed=5).parts.optimizer
    assert (given.betas, given.adam_eps, given.perturbation, given.lr, given.fuse_restore, given.noise,
            given.n_directions, given.seed) == ((0.8, 0.9), 1e-7, "in_place", 3e-4, False, "rademacher", 2, 5)
