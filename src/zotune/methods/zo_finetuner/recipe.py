"""``zotune meta-train``: meta-train a ZO Fine-tuner controller for a model on one task, resumably.

A recipe (``zotune.recipes``): it builds the run from the training components (``zotune.train``) and is imported
by the command line only, never by the method's other modules, which sit below the training layer.

Writes, in ``output_dir``: ``metrics.jsonl`` (per step: the first-order loss, the meta-loss, the probe), ``loss.png``,
``checkpoint/`` (every ``checkpoint_steps`` steps and on SIGINT/SIGTERM; ``--resume`` continues from it exactly),
and the controller file ``out`` at the end, with the base model and the recipe in its metadata.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from zotune.assets import fit_to_context, load_model
from zotune.errors import ConfigError, Interrupted, StateError
from zotune.files.durable import atomic_write, atomic_write_text, check_writable
from zotune.files.outputs import FolderLock, check_not_inputs, existing_outputs, remove_outputs
from zotune.methods.zo_finetuner.controller import ControllerBank
from zotune.methods.zo_finetuner.meta_gradient import MetaRecipe, MetaTrainer
from zotune.settings import is_int, shares_settings
from zotune.tasks import TASKS, encode, load_splits, sample_splits, task_loss
from zotune.train.checkpoint import TrainableWeights, load_parts, save_parts
from zotune.train.config import TrainConfig, setting_problems
from zotune.train.logging import JsonlLogger, read_jsonl
from zotune.train.loop import batch_indices, truncate_log
from zotune.train.plots import plot_training
from zotune.train.signals import StopRequests

__all__ = ["MetaTrainConfig", "meta_train", "MetaTrainResult", "add_arguments", "run"]

_CONTROLLER, _WEIGHTS, _STATE = "controller.safetensors", "weights.safetensors", "trainer.pt"


_SHARED = ("model", "data_dir", "num_train", "data_seed", "max_length", "threads", "resume")


@dataclass
@shares_settings(TrainConfig, only=_SHARED)
class MetaTrainConfig:
    """A meta-training run: the model, the task and its data (``TrainConfig``'s settings of the same name), where
    things go, and the recipe."""

    task: str = field(default="copa", metadata={"help": "the task the controller is meta-trained on (the paper's)"})
    out: str = field(default="controller.safetensors", metadata={"help": "the controller file to write"})
    output_dir: str = field(default="runs/meta-train", metadata={"help": "where logs, the plot and checkpoints go"})
    max_steps: int | None = field(default=None, metadata={
        "help": "stop after this many meta steps (a checkpoint is saved; --resume goes on)"})
    checkpoint_steps: int = field(default=25, metadata={"help": "save a checkpoint every this many steps"})
    overwrite: bool = field(default=False, metadata={
        "help": "replace an existing controller file and a previous meta-training run's files in output_dir"})
    recipe: MetaRecipe = field(default_factory=MetaRecipe)

    def __post_init__(self) -> None:
        if isinstance(self.recipe, dict):
            self.recipe = MetaRecipe(**self.recipe)
        # The settings shared with TrainConfig are checked by its rules; then this recipe's own.
        problems = setting_problems(self, _SHARED)
        if not is_int(self.checkpoint_steps) or self.checkpoint_steps < 1:
            problems.append(f"Invalid checkpoint_steps: {self.checkpoint_steps!r} (must be an integer >= 1)")
        if self.max_steps is not None and (not is_int(self.max_steps) or self.max_steps < 1):
            problems.append(f"Invalid max_steps: {self.max_steps!r} (must be an integer >= 1)")
        if not self.out.endswith(".safetensors"):
            problems.append(f"Invalid out: {self.out!r} (a controller file ends in .safetensors)")
        if problems:
            raise ConfigError("; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class MetaTrainResult:
    steps: int
    total_steps: int
    seconds: float
    controller: str
    last: dict[str, float]


def _parts(model, trainer: MetaTrainer) -> dict[str, Any]:
    """The checkpoint's parts besides the controller, which is saved whole (with its metadata) and read first, to
    build the trainer around it."""
    return {_WEIGHTS: TrainableWeights(model), _STATE: trainer}


def _save(folder: Path, model, trainer: MetaTrainer) -> None:
    save_parts(folder, _parts(model, trainer), extra=lambda tmp: trainer.bank.save(tmp / _CONTROLLER))


def meta_train(config: MetaTrainConfig, *, progress: bool = True) -> MetaTrainResult:
    """Meta-train a controller for ``config.model`` on ``config.task`` and write it to ``config.out``.

    Raises:
        ZotuneError: bad settings, data or model; a checkpoint that does not fit.
        Interrupted: SIGINT/SIGTERM (a checkpoint was saved; ``resume`` continues).
    """
    out = Path(config.output_dir)
    check_not_inputs({"--out": config.out, "--output-dir": [out / name for name in _RUN_FILES]},
                     {"--model": config.model, "--data-dir": config.data_dir}, into=("--output-dir", out))
    check_writable(out)
    check_writable(Path(config.out).parent)
    with FolderLock(out):
        return _meta_train(config, progress=progress)


# What a meta-training run writes in its output folder (a new run refuses a folder holding any of them).
_RUN_FILES = ("metrics.jsonl", "loss.png", "config.json", "checkpoint", "checkpoint.old", "checkpoint.partial")


def _meta_train(config: MetaTrainConfig, *, progress: bool) -> MetaTrainResult:
    out, recipe = Path(config.output_dir), config.recipe
    resuming = config.resume and (out / "checkpoint").is_dir()
    previous = [] if resuming else existing_outputs(out, _RUN_FILES)
    if os.path.lexists(config.out) and not resuming:
        previous.append(config.out)
    if previous and not config.overwrite:
        raise ConfigError(f"{', '.join(previous)} already exist(s) from an earlier run: continue it with --resume, "
                          "replace it with --overwrite, or choose another --output-dir and --out")
    if config.threads:
        torch.set_num_threads(config.threads)
    task = TASKS.get(config.task)
    model, tokenizer = load_model(config.model, dtype="float32")
    data = sample_splits(load_splits(task, config.data_dir), num_train=config.num_train, num_dev=0, num_eval=0,
                       seed=config.data_seed)
    examples = encode(task, data.train, tokenizer, max_length=fit_to_context(model, config.max_length))
    steps_per_epoch = max(1, len(examples) // recipe.batch_size)
    checkpoint = out / "checkpoint"
    resume = resuming
    if not resume:  # --overwrite: only now that the model and data have loaded
        remove_outputs(out, [name for name in previous if name != config.out])
    if resume:
        bank = ControllerBank.load(checkpoint / _CONTROLLER)
    else:
        named = {n: tuple(p.shape) for n, p in model.named_parameters() if p.requires_grad}
        bank = ControllerBank(named, generator=torch.Generator().manual_seed(recipe.seed))
    bank.metadata = {"base_model": config.model, "task": config.task, "recipe": recipe.to_dict(),
                     "num_train": len(examples), "data_seed": config.data_seed}
    trainer = MetaTrainer(model, bank, recipe, steps_per_epoch=steps_per_epoch)
    if resume:
        try:
            load_parts(checkpoint, _parts(model, trainer))
        except (OSError, KeyError, RuntimeError, ValueError) as exc:
            raise StateError(f"Cannot resume from {checkpoint}: {exc}") from exc
    trainer.bank.metadata = bank.metadata
    start = trainer.step_count
    total = trainer.total_steps
    stop_at = total if config.max_steps is None else min(total, start + config.max_steps)
    if resume:
        truncate_log(out / "metrics.jsonl", start)
    logger = JsonlLogger(out / "metrics.jsonl", append=resume)
    pad = tokenizer.pad_token_id
    last: dict[str, float] = {}
    began = time.perf_counter()
    with StopRequests() as stop, tqdm(total=total, initial=start, disable=not progress, unit="step",
                                      desc=f"meta-train {config.task}", dynamic_ncols=True) as bar:
        try:
            for step in range(start, stop_at):
                batch = [examples[i] for i in batch_indices(step, len(examples), recipe.batch_size, recipe.seed)]
                last = trainer.step(lambda batch=batch: task_loss(task, model, batch, pad,
                                                                  grad=torch.is_grad_enabled()))
                logger.log({"kind": "train", "step": step + 1, **last})
                bar.update(1)
                bar.set_postfix(loss=f"{last['loss']:.3f}", meta=f"{last['meta_loss']:.3f}", refresh=False)
                done = step + 1
                if stop.signum is not None:
                    _save(checkpoint, model, trainer)
                    raise Interrupted(f"{signal.Signals(stop.signum).name} at meta step {done}: checkpoint saved "
                                      f"in {checkpoint}; continue with --resume", stop.signum)
                if done % config.checkpoint_steps == 0 or done == stop_at:
                    _save(checkpoint, model, trainer)
        finally:
            logger.close()
    seconds = time.perf_counter() - began
    trainer.bank.metadata["steps"] = trainer.step_count
    trainer.bank.save(config.out)
    records = read_jsonl(out / "metrics.jsonl")
    atomic_write(out / "loss.png", lambda tmp: plot_training(
        records, tmp, title=f"ZO Fine-tuner meta-training on {config.task} ({config.model})"))
    atomic_write_text(out / "config.json", json.dumps(config.to_dict(), indent=1))
    return MetaTrainResult(trainer.step_count, total, seconds, config.out, last)


def add_arguments(parser: argparse.ArgumentParser, add_setting_flags) -> None:
    """``zotune meta-train``'s flags: one per setting of the run and of its recipe."""
    parser.argument_default = argparse.SUPPRESS  # a flag not given leaves the setting's default to the config
    for owner in (MetaTrainConfig, MetaRecipe):
        add_setting_flags(parser, owner, skip=("recipe", "resume", "overwrite"))
    parser.add_argument("--resume", action="store_true", help="continue the run in --output-dir")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing --out file and an earlier run's files in --output-dir")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")


def run(args: argparse.Namespace, say) -> int:
    """Meta-train as the flags say; ``say`` prints a line (the command line's, the only module that prints)."""
    values = dict(vars(args))
    progress = values.pop("progress", True)
    values.pop("command", None)
    recipe_keys = {f.name for f in dataclasses.fields(MetaRecipe)}
    recipe = MetaRecipe(**{k: v for k, v in values.items() if k in recipe_keys})
    config = MetaTrainConfig(**{k: v for k, v in values.items() if k not in recipe_keys}, recipe=recipe)
    torch.manual_seed(recipe.seed)
    say(f"zotune: meta-training a ZO Fine-tuner controller for {config.model} on {config.task}: "
        f"{recipe.epochs} epochs (reset every {recipe.reset_every}), batch {recipe.batch_size}, "
        f"model lr {recipe.model_lr}, meta lr {recipe.meta_lr}, alpha {recipe.alpha}")
    result = meta_train(config, progress=progress)
    done = "" if result.steps == result.total_steps else f" (of {result.total_steps}; --resume goes on)"
    say(f"{result.steps} meta steps{done} in {result.seconds:.0f} s; last loss {result.last.get('loss', 0):.4f}, "
        f"meta-loss {result.last.get('meta_loss', 0):.4f}")
    say(f"  controller {result.controller}  (use: zotune train --method zo-finetuner "
        f"--option controller={result.controller})")
    say(f"  logs       {config.output_dir}")
    return 0
