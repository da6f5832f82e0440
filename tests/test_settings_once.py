"""Each setting is written once: ZOConfig declares the optimizer's, TrainConfig the run's; the command line, the
YAML keys, ZOTrainingArguments and MetaTrainConfig take theirs from those dataclasses."""

import ast
import dataclasses
from pathlib import Path

import pytest
import torch

import zotune
from zotune.cli import build_parser
from zotune.errors import ConfigError, UnknownNameError
from zotune.integrations.trainer import ZOTrainingArguments
from zotune.methods import METHODS
from zotune.methods.zo_finetuner.recipe import MetaTrainConfig
from zotune.optim import ZOConfig, ZOOptimizer, default_lr_eps
from zotune.settings import shares_settings
from zotune.train.config import TrainConfig

SRC = Path(zotune.__file__).parent
ZO_FIELDS = {f.name: f for f in dataclasses.fields(ZOConfig)}
# Other settings that share a name with one of ZOConfig's or TrainConfig's and are not the same setting.
OTHER_SETTINGS_OF_THE_SAME_NAME = {
    ("MetaRecipe", "eps"),  # the meta-training probe's epsilon (arXiv 2510.00419, section 4), not the run's
    ("MetaRecipe", "momentum"),  # the first-order SGD momentum of meta-training
    ("MetaRecipe", "seed"),  # seeds meta-training's directions, batches and controllers
    ("MetaRecipe", "batch_size"),  # meta-training's batch, 8 in the paper
    ("MetaTrainConfig", "task"),  # meta-training's task defaults to the paper's, COPA
    ("MetaTrainConfig", "output_dir"),  # its own folder, runs/meta-train
    ("MetaTrainConfig", "overwrite"),  # also replaces the controller file
    ("MethodSpec", "lr"), ("MethodSpec", "sampler"),  # a method's own defaults, given to register_method
    ("TrainResult", "steps"), ("SeedLog", "steps"),  # a run's steps taken, and its step records
    ("TrainResult", "output_dir"),  # where the run went
    ("BenchConfig", "output_dir"),  # the grid's folder, holding each run's
}


def _flags(subcommand: str) -> set[str]:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices[subcommand]
    return {option for action in sub._actions for option in action.option_strings}


def test_every_optimizer_setting_is_a_flag_a_yaml_key_and_a_trainer_argument_with_zoconfigs_default():
    train = {f.name: f for f in dataclasses.fields(TrainConfig)}
    trainer = {f.name: f for f in dataclasses.fields(ZOTrainingArguments)}
    flags = _flags("train")
    for name, setting in ZO_FIELDS.items():
        if name != "direction_parallel":  # `zotune train --parallel directions` sets it
            assert train[name].metadata["help"].startswith(setting.metadata["help"]), name  # a YAML key, same help
            assert train[name].default in (setting.default, None), name
            flag = {"method_options": "--option", "fuse_restore": "--no-fuse-restore"}.get(name, f"--{name}".replace("_", "-"))
            assert flag in flags, name
        if name not in ("lr", "seed", "weight_decay"):  # the Trainer's own: learning_rate, seed, weight_decay
            assert trainer["zo_" + name].metadata["help"] == setting.metadata["help"], name
    args = ZOTrainingArguments(output_dir="unused", report_to="none", use_cpu=True)
    settings = args.zo_settings()
    assert ZOConfig(**settings) == ZOConfig(**{n: getattr(ZOConfig(), n) for n in settings})


def test_the_default_lr_and_eps_are_picked_in_one_place():
    for method in METHODS.names():
        lr, eps = default_lr_eps(method)
        assert (TrainConfig(method=method).lr, TrainConfig(method=method).eps) == (lr, eps) == \
            (ZOConfig(method=method).lr, ZOConfig.eps)
    weights = torch.nn.Parameter(torch.zeros(3))
    assert ZOOptimizer([("w", weights)]).settings["lr"] == default_lr_eps("mezo")[0]
    assert (TrainConfig(peft="lora").lr, TrainConfig(peft="lora").eps) == default_lr_eps("mezo", "lora")


def test_the_former_name_hparams_reads_the_optimizers_settings_with_a_deprecation_warning():
    optimizer = ZOOptimizer([("w", torch.nn.Parameter(torch.zeros(3)))], lr=0.5)
    with pytest.warns(FutureWarning, match="now ZOOptimizer.settings"):
        assert optimizer.hparams is optimizer.settings and optimizer.settings["lr"] == 0.5


def test_no_setting_is_declared_twice_in_src():
    """A setting of a run (TrainConfig's fields, the optimizer's and its parts' among them) has a default in one
    class of src alone: the others take it from there (``shares_settings``) or read it."""
    settings = {f.name for f in dataclasses.fields(TrainConfig)} | set(ZO_FIELDS)
    declared = {}
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.ClassDef):
                continue
            for item in node.body:
                if not (isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name) and item.value):
                    continue  # a setting has a default
                name = item.target.id.removeprefix("zo_") if node.name == "ZOTrainingArguments" else item.target.id
                if name in settings and (node.name, name) not in OTHER_SETTINGS_OF_THE_SAME_NAME:
                    declared.setdefault(name, []).append(f"{path.relative_to(SRC)}: {node.name}")
    twice = {name: homes for name, homes in declared.items() if len(homes) > 1}
    assert not twice, twice
    assert set(declared) == settings  # each is declared somewhere: the scan sees them


def test_meta_training_takes_the_runs_settings():
    meta = {f.name: f for f in dataclasses.fields(MetaTrainConfig)}
    for name in ("model", "data_dir", "num_train", "data_seed", "max_length", "threads", "resume"):
        assert meta[name].default == {f.name: f for f in dataclasses.fields(TrainConfig)}[name].default


@pytest.mark.parametrize("name,value", [("threads", 100_000), ("data_seed", -1), ("num_train", 0),
                                        ("max_length", "x"), ("resume", "yes"), ("model", "")])
def test_meta_training_checks_the_settings_it_shares_by_the_runs_rules(name, value):
    with pytest.raises(ConfigError) as run:
        TrainConfig(**{name: value})
    with pytest.raises(ConfigError) as meta:
        MetaTrainConfig(**{name: value})
    message = next(part for part in str(run.value).split("; ") if part.startswith(f"Invalid {name}:"))
    assert str(meta.value) == message


def test_a_setting_declared_twice_is_refused():
    with pytest.raises(TypeError, match="ZOConfig's setting"):
        @dataclasses.dataclass
        @shares_settings(ZOConfig)
        class Twice:
            eps: float = 1e-2


def test_a_config_reports_every_problem_at_once_and_builds_its_parts_once():
    with pytest.raises(ConfigError) as caught:
        TrainConfig(lr=-1.0, lr_scheduler="cosnie", peft="lora", lora_r=0, batch_size=0)
    message = str(caught.value)
    for problem in ("Invalid lr: -1.0", "Invalid lr_scheduler: 'cosnie'", "Invalid lora_r: 0", "Invalid batch_size: 0"):
        assert problem in message, message
    config = TrainConfig(method="fzoo", lr_scheduler="cosine", peft="lora")
    assert config.parts.optimizer == ZOConfig(method="fzoo", lr=config.lr, eps=config.eps)
    assert config.parts.schedule.lr_scheduler == "cosine" and config.parts.adapter.lora_r == 8
    assert config.parts.task.name == config.task
    with pytest.raises(UnknownNameError, match="mezzo"):
        TrainConfig(method="mezzo")


def test_a_setting_under_its_former_name_is_read_under_its_new_one(tmp_path):
    """``directions`` (the distribution of z) is now ``noise``: config files, flags, checkpoints' and finished
    runs' recorded settings, and seed logs written before the rename still work."""
    import json

    from method_db import LayeredModel, quadratic
    from zotune.errors import ZotuneWarning
    from zotune.train import seedlog
    from zotune.train.config import with_defaults
    from zotune.train.replay import replay

    with pytest.warns(ZotuneWarning, match="'directions' is now 'noise'"):
        assert TrainConfig.from_dict({"directions": "rademacher"}).noise == "rademacher"
    assert build_parser().parse_args(["train", "--directions", "rademacher"]).noise == "rademacher"
    assert with_defaults({"directions": "rademacher"}, ["noise"]) == {"noise": "rademacher"}
    module = LayeredModel()
    named = list(module.named_parameters())
    loss, _ = quadratic(named)
    opt = ZOOptimizer(named, noise="rademacher", lr=1e-2)
    path = tmp_path / "seeds.jsonl"
    log = seedlog.SeedLogWriter(path, opt, module, model_name="db", dtype="float32")
    for _ in range(3):
        opt.step(loss)
        log.append(opt.last_record)
    log.finish(opt.step_count)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    header = {k: v for k, v in lines[0].items() if k != "check"}
    header["optimizer"]["directions"] = header["optimizer"].pop("noise")  # as the log was written before
    path.write_text(seedlog._dump(header) + "".join(line_text + "\n" for line_text in path.read_text().splitlines()[1:]))
    assert replay(seedlog.read_seed_log(path), LayeredModel()).matches_log
