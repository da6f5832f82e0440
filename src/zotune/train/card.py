"""The model card (``best/README.md``) of a training run: what was trained, how, on what, and how it scored."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from zotune import __version__

__all__ = ["model_card"]


def model_card(config: Any, result: Any, metric: str) -> str:
    """A Hugging Face model card in markdown, with its metadata block: the base model, the zotune method and its
    zeroth-order settings, the data, and the held-out scores that ``zotune train`` printed."""
    local = Path(config.model).exists()
    base = f"base_model: {config.model}\n" if not local and "/" in config.model else ""
    zero_shot, final = result.zero_shot.get("eval_score"), result.final.get("eval_score")
    sizes = result.data or {"train": config.num_train, "dev": config.num_dev, "eval": config.num_eval}
    chosen = (f"the best-dev weights (step {result.best_step} of {result.steps})" if sizes["dev"]
              else f"the final weights (step {result.steps}; no dev set)")
    scores = (f"| held-out {metric} ({sizes['eval']} examples) | {zero_shot:.4f} | {final:.4f} |\n"
              if zero_shot is not None and final is not None else "")
    adapter = f", {config.peft} adapter" if config.peft else ""
    return f"""---
library_name: transformers
{base}tags:
- zotune
- zeroth-order
- {config.method}
---

# {config.method} fine-tune of {Path(config.model).name if local else config.model} on {config.task}

Trained by zotune {__version__} with **{config.method}** (update rule
{config.update}{adapter}): zeroth-order training, forward passes only, no gradients. This folder holds
{chosen}.

| setting | value |
|---|---|
| steps / forward passes | {result.steps} / {result.forward_passes} |
| learning rate, eps | {config.lr}, {config.eps} |
| batch size, directions | {config.batch_size}, {config.n_directions} ({config.directions}) |
| seed, data seed | {config.seed}, {config.data_seed} |
| data | task {config.task}, {sizes['train']} training / {sizes['dev']} dev / {sizes['eval']} held-out examples |

| | zero-shot | fine-tuned |
|---|---|---|
{scores}
The run's seed log (`seeds.jsonl` beside this folder) rebuilds these weights from the base model with
`zotune replay`.
"""
