"""JSON lines: one object per line, split at ``\\n`` only (``str.splitlines()`` would also split inside strings at
U+2028, U+2029, U+0085 and ``\\x1c``-``\\x1e``, which ``json.dumps(ensure_ascii=False)`` writes unescaped)."""

from __future__ import annotations

import json
from typing import Any

__all__ = ["json_objects"]


def json_objects(lines: list[str], source: object, error: type[Exception], bad: str) -> list[dict[str, Any]]:
    """The objects of ``lines`` (blank lines skipped).

    Raises:
        error: ``<source>:<line>: <bad> (<why>)`` for a line that is not JSON, or not a JSON object.
    """
    objects = []
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise error(f"{source}:{lineno}: {bad} ({exc.msg})") from exc
        if not isinstance(value, dict):
            raise error(f"{source}:{lineno}: {bad} (a JSON {type(value).__name__}, not an object)")
        objects.append(value)
    return objects
