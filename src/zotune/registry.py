"""One generic name -> object registry, used for methods, update rules and tasks."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator
from typing import Generic, TypeVar

from zotune.errors import RegistryError, UnknownNameError

__all__ = ["Registry"]

T = TypeVar("T")
_KEY = re.compile(r"^[a-z][a-z0-9_]*$")


def _normalise(name: str) -> str:
    # Users type "zo-finetuner" on the command line; keys are snake_case.
    return name.strip().lower().replace("-", "_")


class Registry(Generic[T]):
    """A mapping from lowercase snake_case names to objects, filled at import time.

    Args:
        kind: what the entries are ("method", "task", ...), used in error messages.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str, obj: T) -> T:
        """Add ``obj`` under ``name``.

        Raises:
            RegistryError: the name is not snake_case or is taken.
        """
        if not _KEY.match(name):
            raise RegistryError(f"Invalid {self.kind} name {name!r} (must be lowercase snake_case)")
        if name in self._entries:
            raise RegistryError(f"{self.kind} {name!r} is already registered")
        self._entries[name] = obj
        return obj

    def get(self, name: str) -> T:
        """Look ``name`` up (``-`` and ``_`` are interchangeable, case is ignored).

        Raises:
            UnknownNameError: with close matches and the list of available names.
        """
        key = _normalise(name)
        if key in self._entries:
            return self._entries[key]
        close = difflib.get_close_matches(key, self._entries, n=3, cutoff=0.6)
        hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise UnknownNameError(
            f"Unknown {self.kind} {name!r}.{hint} Available: {', '.join(self.names())}"
        )

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and _normalise(name) in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)
