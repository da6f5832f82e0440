"""SuperGLUE classification tasks with MeZO's templates (arXiv 2305.17333).

Each prompt ends with a newline and the answer is the next line, so the verbalisers carry no leading space.
Labels follow the data pack's integers (../shared/data/README.md, the ``datasets`` convention); the verbaliser
tuple is ordered by label, so for BoolQ, WSC, WiC and MultiRC (0 = false) it is ``("No", "Yes")``, and for RTE
and CB (0 = entailment) it starts with ``"Yes"``.
"""

from __future__ import annotations

from zotune.tasks.base import Task, register_task

__all__ = ["RTE", "CB", "BOOLQ", "WSC", "WIC", "MULTIRC"]


def _rte(row: dict) -> str:
    return f'{row["premise"]}\nDoes this mean that "{row["hypothesis"]}" is true? Yes or No?\n'


def _cb(row: dict) -> str:
    return f'Suppose {row["premise"]} Can we infer that "{row["hypothesis"]}"? Yes, No, or Maybe?\n'


def _boolq(row: dict) -> str:
    # MeZO's BoolQ template puts the answer on the same line: "<passage> <question>?" -> " Yes" / " No".
    return f'{row["passage"]} {row["question"]}?'


def _wsc(row: dict) -> str:
    return (f'{row["text"]}\nIn the previous sentence, does the pronoun "{row["span2_text"].lower()}" refer to '
            f'{row["span1_text"]}? Yes or No?\n')


def _wic(row: dict) -> str:
    return (f'Does the word "{row["word"]}" have the same meaning in these two sentences? Yes, No?\n'
            f'{row["sentence1"]}\n{row["sentence2"]}\n')


def _multirc(row: dict) -> str:
    return (f'{row["paragraph"]}\nQuestion: {row["question"]}\nI found this answer "{row["answer"]}". '
            f'Is that correct? Yes or No?\n')


RTE = register_task(Task("rte", "RTE (SuperGLUE): does the premise entail the hypothesis", _rte, ("Yes", "No"),
                         ("premise", "hypothesis", "label"), hub=("super_glue", "rte")))
CB = register_task(Task("cb", "CommitmentBank (SuperGLUE): entailment, contradiction or neutral", _cb,
                        ("Yes", "No", "Maybe"), ("premise", "hypothesis", "label"), hub=("super_glue", "cb")))
BOOLQ = register_task(Task("boolq", "BoolQ (SuperGLUE): yes/no questions about a passage", _boolq,
                           (" No", " Yes"), ("passage", "question", "label"), hub=("super_glue", "boolq")))
WSC = register_task(Task("wsc", "WSC (SuperGLUE, wsc.fixed): does the pronoun refer to the noun phrase", _wsc,
                         ("No", "Yes"), ("text", "span1_text", "span2_text", "label"),
                         hub=("super_glue", "wsc.fixed")))
WIC = register_task(Task("wic", "WiC (SuperGLUE): is the word used with the same meaning in both sentences", _wic,
                         ("No", "Yes"), ("word", "sentence1", "sentence2", "label"), hub=("super_glue", "wic")))
MULTIRC = register_task(Task("multirc", "MultiRC (SuperGLUE): is this answer to the question correct", _multirc,
                             ("No", "Yes"), ("paragraph", "question", "answer", "label"),
                             hub=("super_glue", "multirc")))
