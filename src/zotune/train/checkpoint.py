"""Checkpoints: trainable weights (safetensors), optimizer state (tensors only) and loop state (JSON).

A checkpoint folder is written beside its final place and renamed over it, so a crash mid-save leaves the
previous checkpoint intact. Nothing is pickled: the optimizer file loads with ``weights_only=True``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from zotune.errors import StateError

__all__ = ["save_checkpoint", "load_checkpoint", "trainable_state", "load_trainable_state"]

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


def save_checkpoint(folder: str | Path, model, optimizer, loop_state: dict[str, Any]) -> None:
    folder = Path(folder)
    tmp = folder.with_name(folder.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file(trainable_state(model), str(tmp / WEIGHTS))
    torch.save(optimizer.state_dict(), tmp / OPTIMIZER)
    (tmp / LOOP).write_text(json.dumps(loop_state, indent=1), encoding="utf-8")
    old = folder.with_name(folder.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        folder.rename(old)
    tmp.rename(folder)
    shutil.rmtree(old, ignore_errors=True)


def load_checkpoint(folder: str | Path, model, optimizer) -> dict[str, Any]:
    """Restore model weights and optimizer state; return the loop state.

    Raises:
        StateError: the folder is missing, incomplete, corrupt, or does not fit the model/optimizer.
    """
    folder = Path(folder)
    if not (folder / LOOP).is_file():
        raise StateError(f"No checkpoint to resume from in {folder}")
    try:
        load_trainable_state(model, load_file(str(folder / WEIGHTS)))
        optimizer.load_state_dict(torch.load(folder / OPTIMIZER, weights_only=True))
        return json.loads((folder / LOOP).read_text(encoding="utf-8"))
    except StateError:
        raise
    except Exception as exc:
        raise StateError(f"Corrupt checkpoint in {folder}: {exc}") from exc
