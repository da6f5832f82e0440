"""Replay: rebuild fine-tuned weights from the base model and a seed log, with no forward pass.

The optimizer is rebuilt with the logged settings and stepped once per logged step, with a closure that hands
back the logged loss values in order instead of running the model. Every seed, draw and update is then
recomputed exactly as in training, so the result is bitwise equal to the trained weights (same machine class
and torch build: float kernels may differ across CPUs). Each step's seed, projected gradients and block choice
are checked against the log, and the final weights against the logged hash.
"""

from __future__ import annotations

import warnings
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import torch

from zotune.errors import StateError, ZotuneWarning
from zotune.optim import StepRecord, ZOOptimizer
from zotune.train.seedlog import SeedLog, model_sha256

__all__ = ["replay", "load_base", "ReplayResult"]


@dataclass
class ReplayResult:
    steps: int
    sha256: str
    matches_log: bool | None  # None: the log has no end hash for this many steps (an unfinished run, or --step)


def load_base(log: SeedLog, base: str | None = None):
    """``(model, tokenizer)`` as the logged run started: the base model (``base``, default the one the log
    names) in the logged dtype, with the logged adapter added, initialised from the logged seed."""
    from zotune.assets import load_model
    from zotune.integrations.adapters import PeftSettings, apply_peft

    model, tokenizer = load_model(base or log.header["model"], dtype=log.header["dtype"])
    if "peft" in log.header:
        model = apply_peft(model, PeftSettings(**log.header["peft"]), seed=log.header["peft_seed"])
    return model, tokenizer


def _mismatch(record: StepRecord, replayed: StepRecord) -> str | None:
    for name in ("seed", "grads", "plan", "skipped"):
        mine, logged = getattr(replayed, name), getattr(record, name)
        if mine != logged and not (name == "grads" and _same_floats(mine, logged)):
            return f"{name} {mine!r} != logged {logged!r}"
    return None


def _same_floats(a: list[float], b: list[float]) -> bool:
    # NaN (a skipped step's gradient) never equals itself.
    return len(a) == len(b) and all(x == y or (x != x and y != y) for x, y in zip(a, b))


def replay(log: SeedLog, model: torch.nn.Module, *, steps: int | None = None,
           progress: Callable[[int], None] | None = None) -> ReplayResult:
    """Apply the first ``steps`` logged updates (default: all) to ``model``, which holds the base weights.

    Raises:
        StateError: the model is not the logged base model, or the log does not fit these settings (a step's
            recomputed seed or gradient differs from the logged one).
    """
    base = model_sha256(model)
    if base != log.header["base_sha256"]:
        raise StateError(f"The base model's weights differ from the ones the seed log {log.path} was trained from "
                         f"(SHA-256 {base[:12]}... != {log.header['base_sha256'][:12]}...)")
    try:
        optimizer = ZOOptimizer(model, **log.header["optimizer"])
    except (TypeError, ValueError) as exc:
        raise StateError(f"{log.path}: the logged optimizer settings do not build an optimizer ({exc})") from exc
    if log.header.get("blocks", len(optimizer.engine)) != len(optimizer.engine):
        optimizer.remove_hooks()
        raise StateError(f"The seed log {log.path} was written for {log.header['blocks']} trainable tensors; this "
                         f"model has {len(optimizer.engine)}")
    count = len(log.steps) if steps is None else steps
    if not 0 <= count <= len(log.steps):
        raise StateError(f"Cannot replay {count} steps: the seed log {log.path} holds {len(log.steps)}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ZotuneWarning)  # skipped steps and DiZO's notes were shown in training
            for record in log.steps[:count]:
                losses = deque(record.losses)

                def logged_loss() -> float:
                    if not losses:
                        raise StateError(f"Step {record.step} asks for more losses than the seed log holds "
                                         f"({len(record.losses)}): the log does not fit these settings")
                    return losses.popleft()

                optimizer.param_groups[0]["lr"] = record.lr
                optimizer.step(logged_loss, fresh_closure=lambda j: logged_loss)
                problem = _mismatch(record, optimizer.last_record) or (
                    f"{len(losses)} logged losses unused" if losses else None)
                if problem:
                    raise StateError(f"{log.path}: step {record.step} does not replay ({problem})")
                if progress is not None:
                    progress(record.step + 1)
    finally:
        optimizer.remove_hooks()
    sha = model_sha256(model)
    end = log.end if log.end is not None and log.end.get("steps") == count else None
    return ReplayResult(count, sha, None if end is None else sha == end["sha256"])
