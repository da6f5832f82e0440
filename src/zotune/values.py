"""Type checks for values read from users, YAML and JSON files, where ``True`` must not pass for ``1``."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from zotune.errors import ConfigError

__all__ = ["is_int", "is_real", "is_finite", "reject_unknown_keys"]


def is_int(value: Any) -> bool:
    """An int, and not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_real(value: Any) -> bool:
    """An int or a float, and not a bool (``lr=True`` is a mistake, not 1.0)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_finite(value: Any) -> bool:
    """A real number that is neither infinite nor NaN."""
    return is_real(value) and math.isfinite(value)


def reject_unknown_keys(values: dict[str, Any], cls: type, what: str) -> None:
    """Raise one ``ConfigError`` naming every key of ``values`` that is not a field of dataclass ``cls``."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"Unknown {what} {unknown}; allowed: {', '.join(sorted(known))}")
