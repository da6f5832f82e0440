"""``TrainConfig``: every setting of a training run, from the CLI or a YAML file."""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zotune.errors import ConfigError, UnknownNameError, ZotuneWarning
from zotune.integrations.adapters import PeftSettings
from zotune.optim import ZOConfig, default_lr_eps
from zotune.optim.updates import refuse_foreign_settings, rule_setting_names
from zotune.settings import is_finite, is_int, reject_unknown_keys, renamed_settings, shares_settings
from zotune.tasks import TASKS, Task
from zotune.tasks.custom import CUSTOM, custom_task
from zotune.train.precision import check_autocast
from zotune.train.schedule import LRSchedule

__all__ = ["TrainConfig", "RunParts", "load_yaml_config", "with_defaults"]


# ZOConfig's settings a run does not take as such: direction_parallel follows from --parallel directions.
_NOT_RUN_SETTINGS = ("direction_parallel",)
# The update rules' own settings: None unless given, so that one given for another rule is refused.
_UPDATE_SETTINGS = tuple(sorted(rule_setting_names()))


# Settings of one training mode or task only.
_CUSTOM_ONLY = ("template", "dataset", "text_column", "label_column")
_LORA_ONLY = frozenset({"lora_r", "lora_alpha", "lora_targets"})
_PREFIX_ONLY = frozenset({"prefix_tokens"})


@dataclass(frozen=True)
class RunParts:
    """What a run's settings build, once, when its ``TrainConfig`` is made; the loop and the CLI use these.

    Attributes:
        optimizer: the ``ZOOptimizer``'s settings.
        schedule: the learning rate of each step.
        adapter: the LoRA or prefix adapter to add (None: all weights train).
        task: the registered task, or ``custom``'s from the column settings.
    """

    optimizer: ZOConfig
    schedule: LRSchedule
    adapter: PeftSettings | None
    task: Task


@dataclass
@shares_settings(ZOConfig, skip=_NOT_RUN_SETTINGS, given_only=("eps", *_UPDATE_SETTINGS))
@shares_settings(LRSchedule, skip=("lr",))
@shares_settings(PeftSettings, skip=("mode",))
class TrainConfig:
    """A training run. Defaults are the README's main job: MeZO on the built-in model and data.

    The optimizer's settings (method, lr, eps, update, ...) are ``ZOConfig``'s fields, the schedule's
    ``LRSchedule``'s and the adapter's ``PeftSettings``', declared there once. Making one checks every setting,
    reporting every problem at once, and builds those parts once (``parts``): a TrainConfig is settled when
    made; change one with ``dataclasses.replace``, which checks and builds anew.
    """

    model: str = field(default="smollm2-135m", metadata={"help": "built-in name, local folder, .gguf file or hub id"})
    task: str = field(default="rotten_tomatoes", metadata={"help": "registered task name"})
    data_dir: str | None = field(default=None, metadata={
        "help": "a folder holding <task>/ or itself holding train and validation files (.jsonl: a JSON object a "
                "line; .json: the same, or one array of objects; .csv: a header row), or a datasets DatasetDict "
                "saved with save_to_disk"})
    text_column: str = field(default="text", metadata={
        "help": "--task custom: the column that the prompt is, without --template"})
    label_column: str = field(default="label", metadata={
        "help": "--task custom: the column holding the label (an index, or a value of --label-words)"})
    template: str | None = field(default=None, metadata={
        "help": "--task custom: the prompt with {column} fields, e.g. '{review} It was' (default: '{TEXT_COLUMN}')"})
    dataset: str | None = field(default=None, metadata={
        "help": "--task custom without --data-dir: a datasets hub name (needs the network)"})
    label_words: str | None = field(default=None, metadata={
        "help": "--task custom: the word of each label, 'terrible,great' or '1=terrible,5=great'"})
    objective: str = field(default="loss", metadata={
        "help": "what a step minimises: loss (default), accuracy or probability (its smoothed form: the correct "
                "candidate's probability; classification, multiple choice), f1 or em (generation: greedy decodes)"})
    peft: str | None = field(default=None, metadata={
        "help": "train an adapter instead of all weights: lora or prefix (through peft)"})
    parallel: str | None = field(default=None, metadata={
        "help": "under torchrun: data (each process a shard of the batch) or directions (each process "
                "its own --n-directions directions)"})
    steps: int = field(default=60, metadata={"help": "optimizer steps (at most, with a pass or time budget)"})
    max_forward_passes: int | None = field(default=None, metadata={
        "help": "stop once this many forward passes are spent (a fair budget across methods)"})
    max_seconds: float | None = field(default=None, metadata={
        "help": "stop once training (evaluations excluded) has taken this many seconds"})
    batch_size: int = field(default=16, metadata={"help": "training batch size"})
    eval_batch_size: int = field(default=32, metadata={"help": "evaluation batch size"})
    data_seed: int = field(default=0, metadata={"help": "seeds MeZO's train/dev/eval sampling"})
    num_train: int = field(default=1000, metadata={"help": "training examples sampled"})
    num_dev: int = field(default=200, metadata={"help": "dev examples (best-checkpoint selection)"})
    num_eval: int = field(default=500, metadata={"help": "held-out examples for the reported accuracy"})
    eval_steps: int = field(default=20, metadata={"help": "evaluate on dev every this many steps"})
    log_steps: int = field(default=1, metadata={"help": "log the training loss every this many steps"})
    max_length: int = field(default=256, metadata={"help": "max tokens per example (prompts cut from the left)"})
    dtype: str = field(default="float32", metadata={"help": "float32, bfloat16 or float16"})
    autocast: str | None = field(default="auto", metadata={
        "help": "run forward passes under torch.autocast in bfloat16 or float16 while the weights stay float32: "
                "bf16 matrix speed where the hardware has it, perturbation as exact as in float32 "
                "(docs/performance.md). auto: bfloat16 on a CPU with AMX or AVX512-BF16 and on a GPU with bf16, "
                "none elsewhere; none: float32 forward passes"})
    max_nonfinite: int = field(default=5, metadata={"help": "stop after this many non-finite steps in a row"})
    output_dir: str = field(default="runs/demo", metadata={"help": "where logs, plots and checkpoints go"})
    resume: bool = field(default=False, metadata={"help": "continue from output_dir/checkpoint"})
    overwrite: bool = field(default=False, metadata={
        "help": "replace a previous run's files in output_dir (without it, such a folder is refused)"})
    trust_remote_code: bool = field(default=False, metadata={
        "help": "allow a model whose config needs custom Python code from its folder or hub repo"})
    save_best: bool = field(default=True, metadata={"help": "save the best-dev model as a HF folder"})
    offload: str | None = field(default=None, metadata={
        "help": "disk: keep the weights in memory-mapped files in OUTPUT_DIR/offload instead of RAM, so a model "
                "larger than memory trains (a local folder of .safetensors; probes deferred; docs/scale.md)"})
    threads: int | None = field(default=None, metadata={"help": "torch CPU threads (default: torch's choice)"})
    report_to: str = field(default="none", metadata={
        "help": "also log to: tensorboard (event files in OUTPUT_DIR/tensorboard), wandb, both comma-separated, "
                "or none (default)"})

    def __post_init__(self) -> None:
        # Unset lr and eps take the method's and the training mode's defaults; to_dict() shows the values used.
        if self.lr is None or self.eps is None:
            mode = self.peft if isinstance(self.peft, str) else None  # a wrong type is reported below
            try:
                lr, eps = default_lr_eps(self.method, mode)
            except (UnknownNameError, ConfigError):  # the method is reported below
                lr, eps = default_lr_eps(ZOConfig.method, mode)
            self.lr = lr if self.lr is None else self.lr
            self.eps = eps if self.eps is None else self.eps
        problems = setting_problems(self, _SETTING_RULES)
        if self.offload not in (None, "disk"):
            problems.append(f"Invalid offload: {self.offload!r} (disk, or none)")
        elif self.offload == "disk":
            if self.perturbation == "in_place":
                problems.append("--offload disk needs deferred perturbation: an in-place probe would write every "
                                "weight file twice a step")
            elif self.perturbation == "auto":
                self.perturbation = "deferred"  # probes never write the offloaded weights
            if self.parallel is not None:
                problems.append("--offload disk runs in one process: the processes of --parallel would share "
                                "one set of weight files")
        if self.autocast == "none":  # the command line's way to turn off a config file's autocast
            self.autocast = None
        try:
            check_autocast(self.autocast, self.dtype)
        except ConfigError as exc:
            problems.append(str(exc))
        if not isinstance(self.report_to, str):
            problems.append(f"Invalid report_to: {self.report_to!r} (tensorboard, wandb or none)")
        if (self.task == CUSTOM) != (self.label_words is not None):
            problems.append("--task custom and --label-words go together: your own data needs the word of each "
                            "label, and --label-words is for --task custom only")
        if self.task != CUSTOM:
            defaults = {f.name: f.default for f in dataclasses.fields(self)}
            given = [name for name in _CUSTOM_ONLY if getattr(self, name) != defaults[name]]
            if given:  # a built-in task has its own template and columns: these would be ignored
                problems.append(f"{', '.join('--' + n.replace('_', '-') for n in given)}: for --task custom only "
                                f"(task {self.task!r} has its own template and columns)")
        parts, unknown = {}, None
        for name, build in (("optimizer", self._optimizer), ("schedule", self._schedule), ("adapter", self._adapter),
                            ("task", self._task)):
            try:
                parts[name] = build()
            except ConfigError as exc:
                problems.append(str(exc))
            except UnknownNameError as exc:
                unknown = unknown or exc
            except (TypeError, AttributeError):
                if not problems:  # else a wrongly typed setting, reported above
                    raise
        if problems:
            raise ConfigError("; ".join(problems))
        if unknown is not None:
            raise unknown
        self.parts = RunParts(**parts)

    def warn_ignored(self) -> None:
        """Warn once about the settings that change nothing in this run, given anyway (not errors: a YAML file
        shared between runs may carry them). Called when the run starts, not on every validation."""
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        changed = {name for name in defaults if getattr(self, name) != defaults[name]}
        unused = {None: _LORA_ONLY | _PREFIX_ONLY, "lora": _PREFIX_ONLY, "prefix": _LORA_ONLY}.get(self.peft, set())
        ignored = [f"--{n.replace('_', '-')} (without --peft {'lora' if n in _LORA_ONLY else 'prefix'})"
                   for n in sorted(changed & unused)]
        if "min_lr_ratio" in changed and self.lr_scheduler == "constant":
            ignored.append("--min-lr-ratio (with the constant schedule)")
        if is_int(self.warmup_steps) and is_int(self.steps) and self.max_forward_passes is None \
                and self.max_seconds is None and self.warmup_steps > self.steps:
            ignored.append(f"part of --warmup-steps {self.warmup_steps} (the run has {self.steps} steps: the "
                           "learning rate never reaches --lr)")
        if ignored:
            warnings.warn(f"These settings change nothing in this run: {'; '.join(ignored)}", ZotuneWarning,
                          stacklevel=3)

    def reporters(self) -> list[str]:
        """The trackers of ``report_to``, checked (known, and their package installed)."""
        from zotune.train.logging import check_reporters

        names = [n.strip() for n in self.report_to.split(",") if n.strip() and n.strip() != "none"]
        check_reporters(names)
        return names

    def update_settings(self) -> dict[str, Any]:
        """The update rules' settings that were given (``momentum``; ``betas``, ``adam_eps``)."""
        return {name: getattr(self, name) for name in _UPDATE_SETTINGS if getattr(self, name) is not None}

    def _optimizer(self) -> ZOConfig:
        """An update rule's setting given for another rule is refused here (the command line's ``--momentum``
        with ``--update sgd``), where ``ZOOptimizer`` hands each rule its own."""
        given = self.update_settings()
        refuse_foreign_settings(self.update, given)
        return ZOConfig(**self._values_of(ZOConfig, *_NOT_RUN_SETTINGS, *_UPDATE_SETTINGS), **given)

    def _schedule(self) -> LRSchedule:
        return LRSchedule(**self._values_of(LRSchedule))

    def _adapter(self) -> PeftSettings | None:
        if self.peft is None:
            return None
        return PeftSettings(self.peft, **self._values_of(PeftSettings, "mode"))

    def _values_of(self, part: type, *skip: str) -> dict[str, Any]:
        """This config's values of the fields it shares with dataclass ``part``, but ``skip``."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(part) if f.name not in skip}

    def _task(self) -> Task:
        if self.task == CUSTOM:
            return custom_task(text_column=self.text_column, label_column=self.label_column,
                               template=self.template, label_words=self.label_words, dataset=self.dataset)
        return TASKS.get(self.task)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Build from a mapping, rejecting unknown keys (all of them named at once); a setting under its former
        name is taken under its current one, with a warning."""
        values = renamed_settings(values, warn=True)
        reject_unknown_keys(values, cls, "config key(s)")
        return cls(**values)


def _integer_at_least(least: int) -> Callable[[Any], str | None]:
    return lambda value: None if is_int(value) and value >= least else f"must be an integer >= {least}"


def _seed(value: Any) -> str | None:  # torch generators take 64-bit seeds; zotune mixes them as 63-bit
    return None if is_int(value) and 0 <= value < 2**63 else "must be an integer from 0 to 2**63 - 1"


def _positive_or_none(value: Any) -> str | None:
    return None if value is None or (is_finite(value) and value > 0) else "must be a finite number > 0"


def _threads(value: Any) -> str | None:
    most = 4 * (os.cpu_count() or 1)  # beyond that OpenMP only contends (100,000 crashed it)
    if value is None or (is_int(value) and 1 <= value <= most):
        return None
    return f"must be an integer from 1 to {most}, 4x this machine's cores"


def _flag(value: Any) -> str | None:
    return None if isinstance(value, bool) else "must be true or false"


def _name(value: Any) -> str | None:
    return None if isinstance(value, str) and value else "must be a non-empty string"


def _string_or_none(value: Any) -> str | None:
    return None if value is None or isinstance(value, str) else "must be a string"


# How each of TrainConfig's plain settings is checked; configs that share a setting (MetaTrainConfig) check it
# with the same rule (``setting_problems``).
_SETTING_RULES: dict[str, Callable[[Any], str | None]] = {
    **dict.fromkeys(("steps", "batch_size", "eval_batch_size", "eval_steps", "log_steps", "max_length",
                     "max_nonfinite", "num_train"), _integer_at_least(1)),
    **dict.fromkeys(("num_dev", "num_eval"), _integer_at_least(0)),
    **dict.fromkeys(("seed", "data_seed"), _seed),
    **dict.fromkeys(("max_forward_passes", "max_seconds"), _positive_or_none),
    "threads": _threads,
    **dict.fromkeys(("resume", "overwrite", "save_best", "trust_remote_code"), _flag),
    **dict.fromkeys(("model", "task", "method", "update", "noise", "dtype", "output_dir", "lora_targets",
                     "text_column", "label_column", "objective"), _name),
    **dict.fromkeys(("data_dir", "sampler", "peft", "parallel", "template", "label_words", "dataset"),
                    _string_or_none),
}


def setting_problems(config: Any, names: Iterable[str]) -> list[str]:
    """``Invalid NAME: VALUE (why)`` for each of ``names`` whose value in ``config`` breaks TrainConfig's rule."""
    problems = []
    for name in names:
        why = _SETTING_RULES[name](getattr(config, name))
        if why:
            problems.append(f"Invalid {name}: {getattr(config, name)!r} ({why})")
    return problems


def with_defaults(settings: dict[str, Any], keys) -> dict[str, Any]:
    """``settings`` recorded by a run (a checkpoint's fingerprint, a summary), with each of ``keys`` it lacks set
    to its default: a setting added to zotune after the run counts as its default, which keeps the behaviour of
    the versions before it, so an upgrade alone changes nothing a resume or a grid compares."""
    defaults = {**TrainConfig().to_dict(), **_BEFORE_DEFAULT_CHANGED}
    settings = renamed_settings(settings)
    return {**{key: defaults[key] for key in keys if key not in settings and key in defaults}, **settings}


# Settings whose default changed after they were added: a run that does not record one ran with this value.
_BEFORE_DEFAULT_CHANGED = {"autocast": None}  # float32 forward passes, before `auto` became the default


# A run or grid config is a few hundred bytes: these bounds only stop files built to exhaust memory.
_MAX_YAML_BYTES = 1 << 20
_MAX_YAML_VALUES = 100_000


def parse_yaml(text: str, where: str) -> Any:
    """YAML text as plain values, refusing what a config never needs: a key given twice in one mapping (the last
    would win silently), and aliases nested to expand into more than ``_MAX_YAML_VALUES`` values (a 471-byte
    "billion laughs" file once took 95 s and 2.5 GB).

    Raises:
        ConfigError: naming ``where``.
    """
    import yaml

    class _Loader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            seen = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=deep)
                if isinstance(key, str) and key in seen:
                    raise ConfigError(f"{where}: the key {key!r} is given twice (line {key_node.start_mark.line + 1})")
                seen.add(key)
            return super().construct_mapping(node, deep=deep)

    try:
        value = yaml.load(text, Loader=_Loader)  # a SafeLoader: plain values only
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: invalid YAML ({str(exc).splitlines()[0]})") from exc
    count, stack = 0, [value]
    while stack:  # every value as the config's readers will see it, aliases expanded
        item = stack.pop()
        count += 1
        if count > _MAX_YAML_VALUES:
            raise ConfigError(f"{where}: the YAML expands to more than {_MAX_YAML_VALUES:,} values (nested "
                              "aliases?); a config is a short mapping of settings")
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return value


def load_yaml_config(path: str | Path) -> dict[str, Any]:
    """Read a YAML run config into a plain mapping (validated by ``TrainConfig.from_dict``)."""
    try:
        with open(path, "rb") as fh:
            data = fh.read(_MAX_YAML_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"Cannot read config file {path}: {exc.strerror}") from exc
    if len(data) > _MAX_YAML_BYTES:
        raise ConfigError(f"{path}: over {_MAX_YAML_BYTES >> 20} MB, too large for a config file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}); save the config as UTF-8") from exc
    values = parse_yaml(text, str(path)) or {}
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: expected a mapping of settings, got {type(values).__name__}")
    return values
