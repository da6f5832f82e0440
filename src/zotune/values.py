"""Type checks for values read from users, YAML and JSON files, where ``True`` must not pass for ``1``."""

from __future__ import annotations

import math
from typing import Any

__all__ = ["is_int", "is_real", "is_finite"]


def is_int(value: Any) -> bool:
    """An int, and not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_real(value: Any) -> bool:
    """An int or a float, and not a bool (``lr=True`` is a mistake, not 1.0)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_finite(value: Any) -> bool:
    """A real number that is neither infinite nor NaN."""
    return is_real(value) and math.isfinite(value)
