"""Metric loggers: the loop hands them plain dicts; they decide where records go."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Protocol

from zotune.errors import StateError

__all__ = ["MetricLogger", "JsonlLogger", "NullLogger", "read_jsonl"]


class MetricLogger(Protocol):
    def log(self, record: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


def _clean(value: Any) -> Any:
    # JSON has no NaN: a skipped step's loss is written as null.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class JsonlLogger:
    """Appends one JSON object per record to a file, flushed after each write."""

    def __init__(self, path: str | Path, *, append: bool = False) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.path, "a" if append else "w", encoding="utf-8")

    def log(self, record: dict[str, Any]) -> None:
        self._fh.write(json.dumps({k: _clean(v) for k, v in record.items()}) + "\n")
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()


class NullLogger:
    """Drops every record (the processes of a distributed run other than the first)."""

    def log(self, record: dict[str, Any]) -> None:
        return None

    def close(self) -> None:
        return None


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """The records of a JSON-lines file; a last line cut short by a crash (no newline) is dropped.

    Raises:
        StateError: the file cannot be read, is not UTF-8, or holds a line that is not a JSON object.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise StateError(f"Cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from exc
    lines = text.split("\n")
    if lines and lines[-1].strip():
        try:
            json.loads(lines[-1])
        except json.JSONDecodeError:
            lines.pop()
    records = []
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise StateError(f"{path}:{lineno}: corrupt line ({exc.msg})") from exc
        if not isinstance(record, dict):
            raise StateError(f"{path}:{lineno}: corrupt line (not a JSON object)")
        records.append(record)
    return records
