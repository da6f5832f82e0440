"""One generic name -> object registry, used for methods, update rules and tasks."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator
from typing import Generic, TypeVar

from zotune.errors import RegistryError, UnknownNameError

__all__ = ["Registry"]

T = TypeVar("T")
_NAME = re.compile(r"^[a-z][a-z0-9]*([_-][a-z0-9]+)*$")


def normalise(name: str) -> str:
    """The lookup key of a name: ``zo-finetuner`` and ``zo_finetuner`` are one name (case is ignored too)."""
    return name.strip().lower().replace("-", "_")


class Registry(Generic[T]):
    """A mapping from lowercase names to objects, filled at import time.

    A name is shown as registered (``zo-finetuner``) and found under either spelling of its separators
    (``zo_finetuner`` too), so one name is printed everywhere and the other is an alias.

    Args:
        kind: what the entries are ("method", "task", ...), used in error messages.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}  # by lookup key
        self._shown: dict[str, str] = {}  # lookup key -> the name as registered

    def register(self, name: str, obj: T) -> T:
        """Add ``obj`` under ``name``.

        Raises:
            RegistryError: the name is not lowercase words joined by ``_`` or ``-``, or is taken (in either
                spelling).
        """
        if not _NAME.match(name):
            raise RegistryError(f"Invalid {self.kind} name {name!r} (must be lowercase words joined by _ or -)")
        key = normalise(name)
        if key in self._entries:
            raise RegistryError(f"{self.kind} {name!r} is already registered")
        self._entries[key] = obj
        self._shown[key] = name
        return obj

    def get(self, name: str) -> T:
        """Look ``name`` up (``-`` and ``_`` are interchangeable, case is ignored).

        Raises:
            UnknownNameError: with close matches and the list of available names.
        """
        key = normalise(name)
        if key in self._entries:
            return self._entries[key]
        close = [self._shown[k] for k in difflib.get_close_matches(key, self._entries, n=3, cutoff=0.6)]
        hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise UnknownNameError(
            f"Unknown {self.kind} {name!r}.{hint} Available: {', '.join(self.names())}"
        )

    def names(self) -> list[str]:
        """The names as registered, sorted."""
        return sorted(self._shown.values())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and normalise(name) in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)
