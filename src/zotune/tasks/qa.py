"""Extractive and abstractive QA tasks, SQuAD and DROP, generated greedily and scored by EM and F1 (MeZO, arXiv 2305.17333)."""

from __future__ import annotations

import collections
import re
import string

from zotune.tasks.base import Task, register_task

__all__ = ["SQUAD", "DROP", "normalize_answer", "exact_match", "f1_score"]


def normalize_answer(text: str) -> str:
    """SQuAD's normalisation: lower case, no punctuation, no articles (a, an, the), single spaces."""
    text = "".join(ch for ch in text.lower() if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def exact_match(prediction: str, golds: tuple[str, ...] | list[str]) -> float:
    """1.0 when the normalised prediction equals a normalised gold answer, else 0.0."""
    return float(any(normalize_answer(prediction) == normalize_answer(gold) for gold in golds))


def f1_score(prediction: str, golds: tuple[str, ...] | list[str]) -> float:
    """The best token-level F1 of the prediction against the gold answers (after normalisation)."""
    def f1(gold: str) -> float:
        pred_tokens, gold_tokens = normalize_answer(prediction).split(), normalize_answer(gold).split()
        if not pred_tokens or not gold_tokens:
            return float(pred_tokens == gold_tokens)
        common = sum((collections.Counter(pred_tokens) & collections.Counter(gold_tokens)).values())
        if common == 0:
            return 0.0
        precision, recall = common / len(pred_tokens), common / len(gold_tokens)
        return 2 * precision * recall / (precision + recall)

    return max(f1(gold) for gold in golds)


def _squad(row: dict) -> str:
    return f'Title: {row["title"]}\nContext: {row["context"]}\nQuestion: {row["question"]}\nAnswer:'


def _drop(row: dict) -> str:
    return f'Passage: {row["passage"]}\nQuestion: {row["question"]}\nAnswer:'


SQUAD = register_task(Task(
    "squad", "SQuAD v1.1: extractive question answering (greedy generation, EM/F1)", _squad, (),
    ("title", "context", "question", "answers"), hub=("squad", None), metric="f1", kind="generation",
    answers=lambda row: tuple(row["answers"]["text"]),
))
DROP = register_task(Task(
    "drop", "DROP: discrete reasoning over paragraphs (greedy generation, EM/F1)", _drop, (),
    ("passage", "question", "answers_spans"), hub=("drop", None), metric="f1", kind="generation",
    answers=lambda row: tuple(row["answers_spans"]["spans"]),
))
