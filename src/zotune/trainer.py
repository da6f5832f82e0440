"""``ZOTrainer``: a drop-in ``transformers.Trainer`` that trains with a zotune method, forward passes only.

An existing Trainer script switches by changing its class::

    trainer = ZOTrainer(model=model, args=args, train_dataset=ds, zo_method="mezo", zo_eps=1e-3)

``training_step`` runs one ZO step (``2 n`` forward passes of ``compute_loss`` under ``no_grad``) and returns
its loss; no gradient is ever allocated. The Trainer's own ``optimizer.step()`` call that follows is a no-op,
and everything else (data loading, logging, LR schedules, evaluation, checkpointing of the model) is the
Trainer's. The learning rate, weight decay and seed come from ``TrainingArguments``; MeZO uses a constant
schedule (``lr_scheduler_type="constant"``), the Trainer's default is linear decay.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import Trainer

from zotune.errors import ConfigError
from zotune.optim import ZOOptimizer

__all__ = ["ZOTrainer"]


class _StepInTrainingStep(ZOOptimizer):
    """The ZO step runs in ``ZOTrainer.training_step``; the Trainer's later ``step()`` (no closure) does nothing."""

    def step(self, closure=None, **kwargs):  # type: ignore[override]
        if closure is None:
            return None
        return super().step(closure, **kwargs)


class ZOTrainer(Trainer):
    """``transformers.Trainer`` with zeroth-order training.

    Args:
        zo_method: a registered zotune method (``mezo``, ``adalezo``, ``dizo``, ``ldsd``).
        zo_eps: perturbation scale epsilon.
        zo_options: more ``ZOOptimizer`` arguments (``update``, ``n_directions``, ``sampler``,
            ``method_options``, ...).
        *args, **kwargs: those of ``transformers.Trainer``.

    Raises:
        ConfigError: gradient accumulation is asked for (a ZO step already uses the whole batch), or a zotune
            argument is invalid.
    """

    def __init__(self, *args: Any, zo_method: str = "mezo", zo_eps: float = 1e-3,
                 zo_options: dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.args.gradient_accumulation_steps != 1:
            raise ConfigError("ZOTrainer takes gradient_accumulation_steps=1: a ZO step has no gradients to "
                              "accumulate (raise per_device_train_batch_size instead)")
        self.zo_method, self.zo_eps, self.zo_options = zo_method, zo_eps, dict(zo_options or {})
        self.zo_optimizer: ZOOptimizer | None = None

    def create_optimizer(self, model=None) -> torch.optim.Optimizer:
        if self.optimizer is None:
            self.zo_optimizer = _StepInTrainingStep(
                self.model if model is None else model, self.zo_method, lr=self.args.learning_rate, eps=self.zo_eps,
                seed=self.args.seed, weight_decay=self.args.weight_decay, **self.zo_options)
            self.optimizer = self.zo_optimizer
        return self.optimizer

    def training_step(self, model: torch.nn.Module, inputs: dict[str, Any],
                      num_items_in_batch: Any = None) -> torch.Tensor:
        model.eval()  # dropout would let L+ and L- see two different networks
        inputs = self._prepare_inputs(inputs)
        closure = self._data_parallel(lambda: self.compute_loss(model, inputs, num_items_in_batch=num_items_in_batch))
        loss = self.zo_optimizer.step(closure)
        return torch.tensor(loss, device=self.args.device)

    @staticmethod
    def _data_parallel(closure):
        """Under torchrun each process holds a shard of the batch: every probe's loss is averaged over the
        processes (one all-reduce of a float), so every replica computes the same projected gradient and applies
        the same update, as ``zotune train --parallel data`` does. Without it, each replica would step with its
        own shard's gradient and the copies would drift apart."""
        import torch.distributed as dist

        from zotune.distributed import ParallelContext, mean_over_ranks

        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return closure
        return mean_over_ranks(closure, ParallelContext("data", dist.get_rank(), dist.get_world_size()))
