"""Tasks: templates, data loading and candidate scoring. Importing this package registers the built-ins."""

from zotune.tasks import choice, qa, sentiment, superglue
from zotune.tasks.base import TASKS, Task, register_task
from zotune.tasks.data import TaskData, load_splits, read_rows, sample_mezo, sample_splits
from zotune.tasks.scoring import (
    Encoded,
    accuracy,
    candidate_scores,
    classification_loss,
    encode,
    evaluate,
    generate_answers,
    task_loss,
)

__all__ = [
    "TASKS",
    "Task",
    "TaskData",
    "Encoded",
    "register_task",
    "load_splits",
    "read_rows",
    "sample_mezo",
    "sample_splits",
    "encode",
    "candidate_scores",
    "classification_loss",
    "accuracy",
    "evaluate",
    "generate_answers",
    "task_loss",
    "sentiment",
    "superglue",
    "choice",
    "qa",
]
