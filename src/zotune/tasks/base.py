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
        metric: name of the metric reported on held-out data (``accuracy``, or ``f1`` for QA).
        kind: ``classification`` (fixed verbalisers, cross-entropy over them), ``multiple_choice`` (candidates
            per row from ``choices``, LM loss on the correct one) or ``generation`` (QA: LM loss on the first
            gold answer, greedy decoding scored by EM/F1 against ``answers``).
        choices: row -> candidate texts, for multiple choice.
        label_of: row -> index of the correct choice or class, for data without a ``label`` field (ReCoRD, your
            own data's label column).
        label_field: the field holding the label (not text; every other field the template reads must be).
        answers: row -> gold answer texts, for generation.

    Prompts longer than the token budget are cut from the left (``encode``), so every template puts what must
    survive, the question and the candidates, at its end.
    """

    name: str
    description: str
    template: Callable[[dict], str]
    verbalizers: tuple[str, ...]
    fields: tuple[str, ...]
    hub: tuple[str, str | None] | None = None
    metric: str = "accuracy"
    kind: str = "classification"
    choices: Callable[[dict], tuple[str, ...]] | None = None
    answers: Callable[[dict], tuple[str, ...]] | None = None
    label_of: Callable[[dict], int] | None = None
    label_field: str = "label"

    def prompt(self, row: dict) -> str:
        return self.template(row)

    def candidates(self, row: dict) -> tuple[str, ...]:
        if self.choices is not None:
            return self.choices(row)
        if self.answers is not None:
            return (" " + self.gold_answers(row)[0],)
        return self.verbalizers

    def gold_answers(self, row: dict) -> tuple[str, ...]:
        """The gold answers of a generation task's row.

        Raises:
            DataError: the row has no answer.
        """
        golds = tuple(a.strip() for a in self.answers(row) if a.strip()) if self.answers else ()
        if not golds:
            raise DataError(f"{self.name}: the row has no gold answer")
        return golds

    def label(self, row: dict) -> int:
        """The index of the correct candidate.

        Raises:
            DataError: the label is missing, not an integer, or not among the candidates.
        """
        if self.kind == "generation":
            return 0
        if self.choices is not None:
            count = len(self.choices(row))
            value = self.label_of(row) if self.label_of else row.get("label")
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < count:
                raise DataError(f"{self.name}: label {value!r} is not an index among the row's {count} choices")
            return value
        value = self.label_of(row) if self.label_of else row.get("label")
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
