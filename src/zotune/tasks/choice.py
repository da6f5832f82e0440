"""Multiple-choice tasks, scored by the LM likelihood of each row's candidates: COPA and ReCoRD (arXiv 2305.17333)."""

from __future__ import annotations

from zotune.tasks.base import Task, register_task

__all__ = ["COPA", "RECORD"]


def _lower_first(text: str) -> str:
    """COPA's choices continue the premise mid-sentence: lower-case the first letter, except for "I"."""
    return text if text.startswith("I ") or not text else text[0].lower() + text[1:]


def _copa_prompt(row: dict) -> str:
    connective = {"cause": "because", "effect": "so"}[row["question"]]
    return f'{row["premise"].strip().rstrip(".")} {connective}'


def _copa_choices(row: dict) -> tuple[str, ...]:
    return tuple(" " + _lower_first(row[key].strip()) for key in ("choice1", "choice2"))


def _record_prompt(row: dict) -> str:
    # The passage's "@highlight" markers are bullet points, not text.
    return row["passage"].replace("@highlight\n", "- ").strip() + "\n"


def _record_choices(row: dict) -> tuple[str, ...]:
    return tuple(row["query"].replace("@placeholder", entity) for entity in row["entities"])


COPA = register_task(Task(
    "copa", "COPA (SuperGLUE): the more plausible cause or effect of a premise", _copa_prompt, (),
    ("premise", "choice1", "choice2", "question", "label"), hub=("super_glue", "copa"),
    kind="multiple_choice", choices=_copa_choices,
))
def _record_label(row: dict) -> int:
    """ReCoRD rows (datasets' super_glue/record) have no label: the first entity that is an answer is correct."""
    answers = set(row["answers"])
    return next((i for i, entity in enumerate(row["entities"]) if entity in answers), -1)


RECORD = register_task(Task(
    "record", "ReCoRD (SuperGLUE): which entity fills the query's placeholder", _record_prompt, (),
    ("passage", "query", "entities", "answers"), hub=("super_glue", "record"),
    kind="multiple_choice", choices=_record_choices, label_of=_record_label,
))
