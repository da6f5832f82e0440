"""Training objectives: what a ZO step minimises. A step needs a number, not a gradient, so it can be the metric
itself (MeZO, arXiv 2305.17333, trains on accuracy and on SQuAD F1): ``loss`` (the default, the task's
cross-entropy or LM loss), ``accuracy`` (1 - accuracy of the candidates' scores), ``probability`` (1 - the
softmax probability of the correct candidate: accuracy smoothed), ``f1`` and ``em`` (1 - F1 or exact match of
greedy decodes, for generation tasks). Any other objective is a closure: ``ZOOptimizer.step``
takes any callable returning a number to minimise (docs/objectives.md).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from zotune.errors import ConfigError
from zotune.tasks.base import Task
from zotune.tasks.qa import exact_match, f1_score
from zotune.tasks.scoring import Encoded, accuracy, candidate_scores, generate_answers, task_loss

__all__ = ["OBJECTIVES", "objective_fn", "check_objective"]

# objective -> the task kinds it applies to
OBJECTIVES = {"loss": ("classification", "multiple_choice", "generation"),
              "accuracy": ("classification", "multiple_choice"),
              "probability": ("classification", "multiple_choice"),
              "f1": ("generation",), "em": ("generation",)}


def check_objective(objective: str, task: Task) -> None:
    """Raises ConfigError for an unknown objective, or one the task cannot provide (``f1`` on SST-2)."""
    if objective not in OBJECTIVES:
        raise ConfigError(f"Invalid objective {objective!r} (one of {', '.join(OBJECTIVES)})")
    if task.kind not in OBJECTIVES[objective]:
        fits = [name for name, kinds in OBJECTIVES.items() if task.kind in kinds]
        raise ConfigError(f"Task {task.name!r} ({task.kind.replace('_', ' ')}) has no {objective} to train on: "
                          f"use --objective {' or '.join(fits)}")


def objective_fn(objective: str, task: Task, tokenizer, pad_id: int
                 ) -> Callable[[torch.nn.Module, Sequence[Encoded]], float | torch.Tensor]:
    """``f(model, batch)``: the value a step minimises on ``batch`` (lower is better for every objective)."""
    check_objective(objective, task)
    if objective == "loss":
        return lambda model, batch: task_loss(task, model, batch, pad_id)
    if objective == "accuracy":
        def error_rate(model, batch) -> float:
            labels = torch.tensor([ex.label for ex in batch])
            return 1.0 - accuracy(candidate_scores(model, batch, pad_id), labels)
        return error_rate
    if objective == "probability":
        def missed_probability(model, batch) -> torch.Tensor:
            # Accuracy smoothed: the chance of a wrong answer when the answer is drawn from the softmax over the
            # candidates' scores (0/1 accuracy on a batch rarely changes between the two probes).
            labels = torch.tensor([ex.label for ex in batch])
            probs = candidate_scores(model, batch, pad_id).float().softmax(-1)
            return 1.0 - probs.gather(-1, labels.to(probs.device)[:, None]).mean()
        return missed_probability
    metric = f1_score if objective == "f1" else exact_match

    def answer_error(model, batch) -> float:
        predictions = generate_answers(model, batch, tokenizer, pad_id)
        return 1.0 - sum(metric(p, ex.answers) for p, ex in zip(predictions, batch)) / len(batch)
    return answer_error
