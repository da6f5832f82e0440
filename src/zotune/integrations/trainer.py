"""``ZOTrainer``: a drop-in ``transformers.Trainer`` that trains with a zotune method, forward passes only.

An existing Trainer script switches by changing its class, and its arguments to ``ZOTrainingArguments`` (which
``HfArgumentParser`` parses and the Trainer saves with the run, as it does for ``TrainingArguments``)::

    args = ZOTrainingArguments(output_dir="out", zo_method="mezo", zo_eps=1e-3, learning_rate=1e-4)
    trainer = ZOTrainer(model=model, args=args, train_dataset=ds)

Plain ``TrainingArguments`` work too, with the ZO settings as keywords (``zo_method=``, ``zo_eps=``,
``zo_options=``).

``training_step`` runs one ZO step (``2 n`` forward passes of ``compute_loss`` under ``no_grad``) and returns
its loss; no gradient is ever allocated. The Trainer's own ``optimizer.step()`` call that follows is a no-op,
and everything else (data loading, logging, LR schedules, evaluation, checkpointing of the model) is the
Trainer's. The learning rate, weight decay and seed come from ``TrainingArguments``; MeZO uses a constant
schedule (``lr_scheduler_type="constant"``), the Trainer's default is linear decay.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import Trainer, TrainingArguments

from zotune.errors import ConfigError, ZotuneWarning
from zotune.optim import ZOConfig, ZOOptimizer
from zotune.settings import shares_settings

__all__ = ["ZOTrainer", "ZOTrainingArguments"]


# ZOConfig's settings that TrainingArguments already has, under its own names (learning_rate, seed, weight_decay).
_TRAINER_OWN = ("lr", "seed", "weight_decay")


@dataclass
@shares_settings(ZOConfig, skip=_TRAINER_OWN, prefix="zo_", command_line=True)
class ZOTrainingArguments(TrainingArguments):
    """``TrainingArguments`` plus the zeroth-order settings (as ``Seq2SeqTrainingArguments`` adds its own): each
    field of ``ZOConfig`` as ``zo_<name>`` (``zo_method``, ``zo_eps``, ``zo_update``, ...; ``zo_method_options``
    as a JSON object), with ZOConfig's defaults and help.

    ``learning_rate``, ``weight_decay``, ``seed`` and the schedule are the Trainer's; ``max_grad_norm`` defaults
    to 0 here, as there is no gradient to clip, and ``lr_scheduler_type`` to ``constant``, MeZO's schedule
    (arXiv 2305.17333, appendix E), where the Trainer's default is a linear decay.
    """

    max_grad_norm: float = field(default=0.0, metadata={"help": "unused by ZO training (no gradients)"})
    lr_scheduler_type: str = field(default="constant", metadata={
        "help": "the learning-rate schedule (constant, MeZO's, unless set: linear, cosine, ...)"})

    def zo_settings(self) -> dict[str, Any]:
        """The ``ZOOptimizer`` arguments these settings give (besides lr, weight decay and seed)."""
        settings = {f.name: getattr(self, "zo_" + f.name) for f in dataclasses.fields(ZOConfig)
                    if f.name not in _TRAINER_OWN}
        text = settings["method_options"]
        try:
            options = json.loads(text) if isinstance(text, str) else dict(text)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"Invalid zo_method_options {text!r}: not a JSON object") from exc
        if not isinstance(options, dict):
            raise ConfigError(f"Invalid zo_method_options {text!r}: not a JSON object")
        return {**settings, "method_options": options}  # ZOConfig reads the betas list as a tuple


# TrainingArguments that only a gradient optimizer or a backward pass reads: set to anything but their default,
# they change nothing under ZO, and ZOTrainer says so once.
_GRADIENT_ONLY = ("optim", "optim_args", "optim_target_modules", "adam_beta1", "adam_beta2", "adam_epsilon",
                  "max_grad_norm", "gradient_checkpointing", "activation_checkpointing", "neftune_noise_alpha")


def _ignored_arguments(args: TrainingArguments) -> list[str]:
    """The gradient-only arguments set to something other than the default of ``args``' own class (a default of
    None also covers the False that ``__post_init__`` turns it into)."""
    defaults = {f.name: f.default for f in dataclasses.fields(args)}
    ignored = []
    for name in _GRADIENT_ONLY:
        if name not in defaults:  # an argument this transformers version does not have
            continue
        value, default = getattr(args, name), defaults[name]
        if value != default and not (default is None and not value):
            ignored.append(f"{name}={getattr(value, 'value', value)}")  # an enum's value, not its repr
    return ignored


class _StepInTrainingStep(ZOOptimizer):
    """The ZO step runs in ``ZOTrainer.training_step``; the Trainer's later ``step()`` (no closure) does nothing."""

    def step(self, closure=None, **kwargs):  # type: ignore[override]
        if closure is None:
            return None
        return super().step(closure, **kwargs)


class ZOTrainer(Trainer):
    """``transformers.Trainer`` with zeroth-order training.

    Args:
        zo_method: a registered zotune method (``mezo``, ``adalezo``, ``dizo``, ``ldsd``, ``zo-finetuner``).
        zo_eps: perturbation scale epsilon.
        zo_options: more ``ZOOptimizer`` arguments (``update``, ``n_directions``, ``sampler``,
            ``method_options``, ...).
        *args, **kwargs: those of ``transformers.Trainer``.

    Raises:
        ConfigError: gradient accumulation is asked for (a ZO step already uses the whole batch), or a zotune
            argument is invalid.
    """

    def __init__(self, *args: Any, zo_method: str | None = None, zo_eps: float | None = None,
                 zo_options: dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.args.gradient_accumulation_steps != 1:
            raise ConfigError("ZOTrainer takes gradient_accumulation_steps=1: a ZO step has no gradients to "
                              "accumulate (raise per_device_train_batch_size instead)")
        from_args = isinstance(self.args, ZOTrainingArguments)
        if from_args and (zo_method, zo_eps, zo_options) != (None, None, None):
            raise ConfigError("Give the ZO settings in ZOTrainingArguments or as ZOTrainer keywords, not both")
        keywords = {"method": zo_method, "eps": zo_eps}
        self.zo_settings = self.args.zo_settings() if from_args else \
            {**(zo_options or {}), **{key: value for key, value in keywords.items() if value is not None}}
        self.zo_method = self.zo_settings.get("method", ZOConfig.method)
        self.zo_optimizer: ZOOptimizer | None = None
        ignored = _ignored_arguments(self.args)
        if ignored:
            warnings.warn(f"ZOTrainer ignores {', '.join(ignored)}: they configure gradients, a gradient optimizer "
                          "or a backward pass, and zeroth-order training has none", ZotuneWarning, stacklevel=2)

    def create_accelerator_and_postprocess(self) -> None:
        super().create_accelerator_and_postprocess()
        # fp16 gives accelerate a gradient scaler, whose step asserts that it saw gradients: a ZO step has none to
        # scale (its losses are plain floats), so the scaler goes and the fp16 autocast of the forward passes stays.
        self.accelerator.scaler = None

    def create_optimizer(self, model=None) -> torch.optim.Optimizer:
        if self.optimizer is None:
            self.zo_optimizer = _StepInTrainingStep(
                self.model if model is None else model, lr=self.args.learning_rate, seed=self.args.seed,
                weight_decay=self.args.weight_decay, **self.zo_settings)
            self.optimizer = self.zo_optimizer
        return self.optimizer

    def training_step(self, model: torch.nn.Module, inputs: dict[str, Any],
                      num_items_in_batch: Any = None) -> torch.Tensor:
        model.eval()  # dropout would let L+ and L- see two different networks
        inputs = self._prepare_inputs(inputs)
        # Each forward pass gets its own shallow copy: label smoothing and custom compute_loss methods pop
        # "labels" from the dict they are given, and a step calls compute_loss at least twice.
        closure = self._data_parallel(
            lambda: self.compute_loss(model, dict(inputs), num_items_in_batch=num_items_in_batch))
        loss = self.zo_optimizer.step(closure)
        return torch.tensor(loss, device=self.args.device)

    # No gradient exists: the Trainer would otherwise clip nothing and log a grad_norm of 0 every step.
    def _clip_grad_norm(self, model):
        return None

    def _get_grad_norm(self, model, grad_norm=None):
        return None

    def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
        """The Trainer's logs, with the ZO step's own numbers on training records: the last projected gradient,
        the forward passes so far, and the method's and sampler's metrics."""
        if "loss" in logs and self.zo_optimizer is not None and self.zo_optimizer.last_probes:
            opt = self.zo_optimizer
            logs = {**logs, "zo_projected_grad": opt.last_probes[0].projected_grad,
                    "zo_forward_passes": opt.forward_passes,
                    **{f"zo_{k}": v for k, v in {**opt.sampler.metrics(), **opt.method.metrics()}.items()}}
        super().log(logs, *args, **kwargs)

    def create_model_card(self, *args: Any, **kwargs: Any) -> None:
        """The Trainer's card, with the optimizer it names replaced by what trained the model."""
        tags = kwargs.pop("tags", None) or []
        tags = [tags] if isinstance(tags, str) else list(tags)
        if kwargs.get("dataset") and not kwargs.get("dataset_tags"):
            kwargs["dataset_tags"] = kwargs["dataset"]  # the hub reads the datasets from the metadata only
        super().create_model_card(*args, tags=[*tags, "zotune", "zeroth-order", self.zo_method], **kwargs)
        card = Path(self.args.output_dir) / "README.md"
        if not self.is_world_process_zero() or not card.is_file():
            return
        settings = self.zo_optimizer.settings if self.zo_optimizer is not None else self.zo_settings
        trained_by = (f"zotune {self.zo_method} (zeroth-order: forward passes only, no gradients), "
                      f"eps {settings.get('eps', ZOConfig.eps)}, update {settings.get('update', ZOConfig.update)}")
        lines = [f"- optimizer: {trained_by}" if line.startswith("- optimizer:") else line
                 for line in card.read_text(encoding="utf-8").splitlines()]
        card.write_text("\n".join(lines) + "\n", encoding="utf-8")

    @staticmethod
    def _data_parallel(closure):
        """Under torchrun each process holds a shard of the batch: every probe's loss is averaged over the
        processes (one all-reduce of a float), so every replica computes the same projected gradient and applies
        the same update, as ``zotune train --parallel data`` does. Without it, each replica would step with its
        own shard's gradient and the copies would drift apart."""
        from zotune.optim.distributed import group_context, mean_over_ranks

        group = group_context("data")
        if group is None or group.world_size == 1:
            return closure
        return mean_over_ranks(closure, group)
