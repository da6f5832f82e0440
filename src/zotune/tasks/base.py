"""The task abstraction: a prompt template, verbalised candidates, a label, and a metric.

Tasks are plain Python (MeZO's per-task ``encode``/``verbalize`` templates), registered by name in ``TASKS``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from zotune.errors import DataError
from zotune.registry import Registry

__all__ = ["Task", "TASKS", "register_task"]


@dataclass(frozen=True)
class Task:
    """A classification task scored by the likelihood of each label's verbaliser after the prompt.

    Attributes:
        name: registry key.
        description: one line for ``zotune list``.
        template: row -> prompt text (without the candidate).
        verbalizers: candidate text per label; label ``i`` is ``verbalizers[i]``. Each starts with exactly one
            space, so the candidate continues the prompt as a new word.
        fields: the row fields the template reads (checked on load, with the file named in the error).
        hub: ``(path, config)`` for ``datasets.load_dataset`` when no ``--data-dir`` is given, or None.
        metric: name of the metric reported on held-out data.
    """

    name: str
    description: str
    template: Callable[[dict], str]
    verbalizers: tuple[str, ...]
    fields: tuple[str, ...]
    hub: tuple[str, str | None] | None = None
    metric: str = "accuracy"

    def prompt(self, row: dict) -> str:
        return self.template(row)

    def candidates(self, row: dict) -> tuple[str, ...]:
        return self.verbalizers

    def label(self, row: dict) -> int:
        """The index of the correct candidate.

        Raises:
            DataError: the label is missing, not an integer, or not among the candidates.
        """
        value = row.get("label")
        if isinstance(value, bool) or not isinstance(value, int):
            raise DataError(f"{self.name}: label {value!r} is not an integer class index")
        if not 0 <= value < len(self.verbalizers):
            raise DataError(
                f"{self.name}: label {value} is not among the candidates "
                f"(0..{len(self.verbalizers) - 1}: {', '.join(repr(v) for v in self.verbalizers)})"
            )
        return value


TASKS: Registry[Task] = Registry("task")


def register_task(task: Task) -> Task:
    return TASKS.register(task.name, task)
