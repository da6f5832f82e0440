"""Data-parallel and direction-parallel ZO on ``torch.distributed``: only scalars cross the network.

Every rank holds a full replica and the same optimizer seed, so every rank draws the same step seed.

- **data**: each rank evaluates L+ and L- on its shard of the batch; the losses are averaged over ranks (one
  all-reduce of one float64 per forward pass), so every rank sees the whole batch's loss and applies the same
  update. Replicas stay bitwise identical: they do the same arithmetic on the same numbers.
- **directions**: every rank evaluates the whole batch on its own directions (n-SPSA with the directions spread
  over the ranks); one all-reduce per step shares every direction's losses, and every rank applies all the
  updates. Perturbation is deferred (never written into the weights), so a rank's probes leave no rounding
  residue that the others lack, and replicas stay bitwise identical.

Launch with ``torchrun --nproc-per-node N -m zotune.cli train --parallel data ...`` (gloo on CPU, nccl on GPU).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import torch

from zotune.errors import ConfigError

__all__ = ["ParallelContext", "PARALLEL_MODES", "group_context", "init_parallel", "close_parallel", "mean_over_ranks",
           "sum_over_ranks", "bytes_communicated"]

PARALLEL_MODES = ("data", "directions")

_sent = {"bytes": 0}


def bytes_communicated() -> int:
    """Payload bytes this process has all-reduced so far (for tests and the benchmark)."""
    return _sent["bytes"]


def sum_over_ranks(values: torch.Tensor) -> torch.Tensor:
    """Element-wise sum of a small float64 tensor over all ranks (in place); its bytes are counted."""
    import torch.distributed as dist

    _sent["bytes"] += values.numel() * values.element_size()
    dist.all_reduce(values)
    return values


@dataclass(frozen=True)
class ParallelContext:
    mode: str | None = None
    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, indices: list[int]) -> list[int]:
        """This rank's contiguous part of a batch (data parallelism); the whole batch otherwise."""
        if self.mode != "data":
            return indices
        per = len(indices) // self.world_size
        return indices[self.rank * per:(self.rank + 1) * per]


def group_context(mode: str) -> ParallelContext | None:
    """This process's place in the initialised process group, for ``mode`` (None: no group, or one process)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return None
    return ParallelContext(mode, dist.get_rank(), dist.get_world_size())


def init_parallel(mode: str | None, *, batch_size: int) -> ParallelContext:
    """Join the process group ``torchrun`` describes in the environment, for ``mode``.

    Raises:
        ConfigError: an unknown mode, a mode without ``torchrun``, or a batch that does not split evenly.
    """
    if mode is None:
        return ParallelContext()
    if mode not in PARALLEL_MODES:
        raise ConfigError(f"Invalid parallel: {mode!r} (one of {', '.join(PARALLEL_MODES)})")
    if "WORLD_SIZE" not in os.environ:
        raise ConfigError(f"--parallel {mode} needs several processes: launch with "
                          "torchrun --nproc-per-node N -m zotune.cli train ...")
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    context = group_context(mode)
    if mode == "data" and batch_size % context.world_size:
        raise ConfigError(f"--batch-size {batch_size} does not split evenly over {context.world_size} processes")
    return context


def close_parallel(context: ParallelContext) -> None:
    """Wait for every rank, then leave the process group. A rank that exits while another still talks to it
    makes gloo abort the process, so every rank calls this once its work is done."""
    if context.mode is None:
        return
    import torch.distributed as dist

    dist.barrier()
    dist.destroy_process_group()


def mean_over_ranks(closure: Callable[[], object], context: ParallelContext) -> Callable[[], float]:
    """A closure returning the mean over ranks of ``closure()`` (each rank's loss on its shard)."""
    if context.mode != "data":
        return closure

    def averaged() -> float:
        loss = closure()
        value = float(loss.item() if isinstance(loss, torch.Tensor) else loss)
        total = sum_over_ranks(torch.tensor([value], dtype=torch.float64))
        return float(total.item()) / context.world_size

    return averaged
