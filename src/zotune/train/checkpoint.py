"""Checkpoints: a folder of named parts, each a stateful object saved to its own file, and the loop state (JSON).

Every recipe checkpoints through ``save_parts`` / ``load_parts``: a part is any object with ``state_dict()`` and
``load_state_dict()`` (the optimizer, ZO Fine-tuner's meta-trainer, ``TrainableWeights`` for a model), saved as
safetensors when its file ends in ``.safetensors`` (a flat dict of tensors) and with ``torch.save`` otherwise
(tensors and plain values only). ``zotune train``'s parts are ``weights.safetensors`` and ``optimizer.pt``. A
checkpoint folder is written beside its final place, fsynced and renamed over it (``zotune.files.durable``), so a
process killed at any moment leaves the previous checkpoint or the new one, whole. Nothing is pickled: ``.pt``
files load with ``weights_only=True``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from zotune.errors import StateError
from zotune.files.durable import previous_folder, replace_folder

__all__ = ["save_checkpoint", "load_checkpoint", "find_checkpoint", "load_best", "trainable_state",
           "load_trainable_state", "TrainableWeights", "save_parts", "load_parts"]

WEIGHTS = "weights.safetensors"
OPTIMIZER = "optimizer.pt"
LOOP = "loop_state.json"


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The trainable parameters by name (tied weights appear once)."""
    return {n: p.detach().contiguous() for n, p in model.named_parameters() if p.requires_grad}


def load_trainable_state(model: torch.nn.Module, weights: dict[str, torch.Tensor]) -> None:
    """Copy ``weights`` into the model's trainable parameters; every one must be present with its shape."""
    params = dict(model.named_parameters())
    expected = {n for n, p in params.items() if p.requires_grad}
    missing, unexpected = sorted(expected - set(weights)), sorted(set(weights) - expected)
    if missing or unexpected:
        raise StateError(f"Checkpoint does not fit the model: missing {missing[:5]}, unexpected {unexpected[:5]}")
    with torch.no_grad():
        for name, tensor in weights.items():
            if params[name].shape != tensor.shape:
                raise StateError(f"Checkpoint tensor {name} has shape {tuple(tensor.shape)}, "
                                 f"the model's is {tuple(params[name].shape)}")
            params[name].copy_(tensor)


class TrainableWeights:
    """A model's trainable parameters as a checkpoint part (``trainable_state`` / ``load_trainable_state``)."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model

    def state_dict(self) -> dict[str, torch.Tensor]:
        return trainable_state(self.model)

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        load_trainable_state(self.model, state)


def save_parts(folder: str | Path, parts: dict[str, Any], extra: Callable[[Path], None] | None = None) -> None:
    """Write each part's state to ``folder/<its file name>`` as one atomic folder; ``extra(tmp)`` may add files."""
    def write(tmp: Path) -> None:
        for name, part in parts.items():
            if name.endswith(".safetensors"):
                save_file(part.state_dict(), str(tmp / name))
            else:
                torch.save(part.state_dict(), tmp / name)
        if extra is not None:
            extra(tmp)

    replace_folder(folder, write)


def load_parts(folder: str | Path, parts: dict[str, Any]) -> None:
    """Load each part's state from ``folder/<its file name>`` (the files ``save_parts`` wrote)."""
    folder = Path(folder)
    for name, part in parts.items():
        if name.endswith(".safetensors"):
            part.load_state_dict(load_file(str(folder / name)))
        else:
            part.load_state_dict(torch.load(folder / name, weights_only=True))


def load_best(model: torch.nn.Module, folder: str | Path) -> None:
    """Load the trainable weights of a best-dev folder written by ``save_pretrained`` (a full model, or a peft
    model's adapter alone) into ``model``."""
    folder = Path(folder)
    if (folder / "adapter_model.safetensors").is_file():
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(model, load_file(str(folder / "adapter_model.safetensors")))
        return
    saved = load_file(str(folder / "model.safetensors"))
    load_trainable_state(model, {k: saved[k] for k in trainable_state(model)})


def _training_parts(model, optimizer) -> dict[str, Any]:
    return {WEIGHTS: TrainableWeights(model), OPTIMIZER: optimizer}


def save_checkpoint(folder: str | Path, model, optimizer, loop_state: dict[str, Any]) -> None:
    """``zotune train``'s checkpoint: the trainable weights, the optimizer and the loop state."""
    save_parts(folder, _training_parts(model, optimizer),
               extra=lambda tmp: (tmp / LOOP).write_text(json.dumps(loop_state, indent=1), encoding="utf-8"))


def find_checkpoint(folder: str | Path) -> Path | None:
    """The checkpoint to resume from: ``folder``, or the previous one a crash mid-save left beside it."""
    found = previous_folder(folder)
    return found if found is not None and (found / LOOP).is_file() else None


def load_checkpoint(folder: str | Path, model, optimizer) -> dict[str, Any]:
    """Restore model weights and optimizer state; return the loop state.

    Raises:
        StateError: the folder is missing, incomplete, corrupt, or does not fit the model/optimizer.
    """
    found = find_checkpoint(folder)
    if found is None:
        raise StateError(f"No checkpoint to resume from in {folder}")
    folder = found
    try:
        loop_state = json.loads((folder / LOOP).read_text(encoding="utf-8"))
        _check_loop_state(loop_state)
    except (OSError, ValueError, StateError) as exc:
        raise StateError(f"Corrupt checkpoint in {folder}: {exc}") from exc
    try:
        load_parts(folder, _training_parts(model, optimizer))
    except StateError:
        raise
    except Exception as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise StateError(f"Corrupt checkpoint in {folder}: {reason}") from exc
    if getattr(optimizer, "step_count", loop_state["step"]) != loop_state["step"]:
        raise StateError(f"Corrupt checkpoint in {folder}: {LOOP} is at step {loop_state['step']}, the optimizer "
                         f"state at step {optimizer.step_count}")
    return loop_state


# The loop state's entries and their JSON types; a checkpoint may hold more (zero-shot scores, timings, ...).
_LOOP_FIELDS = {"step": int, "best_dev": (int, float), "best_dev_loss": (int, float), "best_step": int,
                "train_seconds": (int, float)}


def _check_loop_state(state: Any) -> None:
    if not isinstance(state, dict):
        raise StateError(f"{LOOP} is not a JSON object")
    for name, kind in _LOOP_FIELDS.items():
        value = state.get(name)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise StateError(f"{LOOP}: {name} is {value!r}, not a number of the right kind")
    if state["step"] < 0 or not 0 <= state["best_step"] <= state["step"]:
        raise StateError(f"{LOOP}: step {state['step']} / best_step {state['best_step']} out of range")
    for name in ("zero_shot", "step_seconds", "fingerprint"):
        if name in state and not isinstance(state[name], dict):
            raise StateError(f"{LOOP}: {name} is not a JSON object")
