"""The model card (``README.md`` of ``best/`` and ``final/``) of a training run: what was trained, how, on what,
and how it scored, with the metadata the Hugging Face hub reads (base model, library, datasets, tags, and the
held-out score as an evaluation result), written through ``huggingface_hub.ModelCard``."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from zotune import __version__

__all__ = ["model_card", "hub_base_model"]


def hub_base_model(spec: str) -> str | None:
    """The hub id of the base model (a card's ``base_model``): a hub id as given, the one a built-in model was
    converted from, or None for a local folder or file (the hub cannot link to a path)."""
    from zotune.assets import BUILTIN_MODELS

    if spec in BUILTIN_MODELS:
        return BUILTIN_MODELS[spec].origin or None
    if Path(spec).expanduser().exists() or spec.startswith((".", "/", "~")):
        return None
    return spec


def model_card(config: Any, result: Any, task: Any, *, weights: str = "best") -> str:
    """A Hugging Face model card in markdown with its YAML metadata.

    Args:
        weights: ``best`` (the best-dev weights) or ``final``: which weights the folder holds.
    """
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    sizes = result.data or {"train": config.num_train, "dev": config.num_dev, "eval": config.num_eval}
    zero_shot, final = result.zero_shot.get("eval_score"), result.final.get("eval_score")
    if weights == "best" and sizes["dev"]:
        chosen = f"the best-dev weights (step {result.best_step} of {result.steps})"
        scored = final
    else:
        chosen = f"the final weights (step {result.steps}" + ("; no dev set)" if not sizes["dev"] else ")")
        scored = final if not sizes["dev"] else None  # the held-out set scored the best-dev weights only
    base = hub_base_model(config.model)
    dataset = task.hub[0] if task.hub else (config.dataset or None)
    evals = None
    if scored is not None and math.isfinite(scored):
        evals = [EvalResult(task_type="text-generation" if task.kind == "generation" else "text-classification",
                            dataset_type=dataset or task.name, dataset_name=f"{task.name} (held-out rows)",
                            metric_type=task.metric, metric_value=round(scored, 4))]
    data = ModelCardData(
        base_model=base, library_name="peft" if config.peft else "transformers", datasets=[dataset] if dataset else None,
        tags=["zotune", "zeroth-order", config.method, *([config.peft] if config.peft else [])],
        model_name=f"{config.method}-{task.name}", eval_results=evals)
    model_line = base or config.model
    scores = (f"| held-out {task.metric} ({sizes['eval']} examples) | {zero_shot:.4f} | {final:.4f} |\n"
              if zero_shot is not None and final is not None else "")
    adapter = f", {config.peft} adapter" if config.peft else ""
    body = f"""
# {config.method} fine-tune of {Path(model_line).name if base is None else base} on {task.name}

Trained by zotune {__version__} with **{config.method}** (update rule
{config.update}{adapter}): zeroth-order training, forward passes only, no gradients. This folder holds
{chosen}. Base model: `{model_line}`.

| setting | value |
|---|---|
| steps / forward passes | {result.steps} / {result.forward_passes} |
| learning rate, eps | {config.lr}, {config.eps} |
| batch size, directions | {config.batch_size}, {config.n_directions} ({config.noise}) |
| seed, data seed | {config.seed}, {config.data_seed} |
| data | task {task.name}, {sizes['train']} training / {sizes['dev']} dev / {sizes['eval']} held-out examples |

| | zero-shot | fine-tuned (best-dev weights) |
|---|---|---|
{scores}
The run's seed log (`seeds.jsonl` beside this folder) rebuilds the trained weights from the base model with
`zotune replay`.
"""
    return str(ModelCard(f"---\n{data.to_yaml()}\n---\n{body}"))
