"""Settings read from users: type checks for values from flags, YAML and JSON files (``True`` must not pass for
``1``), unknown keys, and one dataclass's settings shared by another, so each is written once."""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
import warnings
from collections.abc import Callable, Iterable
from typing import Any

from zotune.errors import ConfigError, ZotuneWarning

__all__ = ["is_int", "is_real", "is_finite", "reject_unknown_keys", "shares_settings", "RENAMED", "renamed_settings"]

# Settings renamed since they were released: former name -> current name. Seed logs, checkpoints, finished runs
# and config files that use a former name are read under the current one.
RENAMED = {"directions": "noise"}  # the distribution of z, apart from n_directions, the count


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


def renamed_settings(values: dict[str, Any], *, warn: bool = False) -> dict[str, Any]:
    """``values`` with each setting given under a former name moved to its current one (a value given under the
    current name wins); with ``warn``, a ``ZotuneWarning`` names the renames."""
    out, moved = dict(values), []
    for old, new in RENAMED.items():
        if old in out:
            value = out.pop(old)
            out.setdefault(new, value)
            moved.append(f"{old!r} is now {new!r}")
    if warn and moved:
        warnings.warn(f"Renamed settings: {'; '.join(moved)}", ZotuneWarning, stacklevel=3)
    return out


def shares_settings(source: type, *, only: Iterable[str] | None = None, skip: Iterable[str] = (),
                    given_only: Iterable[str] = (), prefix: str = "", command_line: bool = False
                    ) -> Callable[[type], type]:
    """A class decorator, under ``@dataclass``, that gives the class the fields of dataclass ``source``: their
    names (with ``prefix``), types, defaults and help texts stay written in ``source`` alone.

    Args:
        only: the fields of ``source`` the class takes (default: all).
        skip: fields of ``source`` the class does not take.
        given_only: fields that default to None in the class, meaning "not given": the class resolves them (a
            default that depends on its other settings) or passes on only those given. Their help names
            ``source``'s default.
        command_line: types an argument parser reads (``transformers.HfArgumentParser``): a union with a config
            object becomes its name (``str``), a tuple a list, a mapping its JSON text.

    Raises:
        TypeError: the class already declares one of those fields (a setting written twice).
    """
    unset = set(given_only)
    skipped = set(skip) | ({f.name for f in dataclasses.fields(source)} - set(only) if only is not None else set())

    def add_fields(cls: type) -> type:
        hints = typing.get_type_hints(source)
        annotations = cls.__dict__.get("__annotations__", {})
        for shared in dataclasses.fields(source):
            if shared.name in skipped:
                continue
            name = prefix + shared.name
            if name in annotations:
                raise TypeError(f"{cls.__name__}.{name} is {source.__name__}'s setting: take it from there")
            kind, default, factory = hints[shared.name], shared.default, shared.default_factory
            if command_line:
                kind, default, factory = _for_command_line(kind, default, factory)
            metadata = dict(shared.metadata)
            if shared.name in unset:
                was = default if factory is dataclasses.MISSING else factory()
                if "default" not in metadata.get("help", ""):
                    metadata["help"] = f"{metadata.get('help', '')} (default {was})".strip()
                kind, default, factory = kind | None, None, dataclasses.MISSING
            annotations[name] = kind
            setattr(cls, name, dataclasses.field(default=default, default_factory=factory, metadata=metadata))
        cls.__annotations__ = annotations
        return cls

    return add_fields


def _for_command_line(kind: Any, default: Any, factory: Any) -> tuple[Any, Any, Any]:
    """``kind`` as a type an argument parser reads, with its default in that type."""
    parts = [a for a in typing.get_args(kind) if a is not type(None)]
    union = isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union
    optional = union and type(None) in typing.get_args(kind)
    if union:  # a name or a config object: the name
        kind = parts[0] | None if optional else parts[0]
    elif typing.get_origin(kind) is tuple:
        kind, factory, default = list[typing.get_args(kind)[0]], (lambda value=default: list(value)), dataclasses.MISSING
    elif typing.get_origin(kind) is dict or kind is dict:
        kind, default = str, json.dumps(factory() if factory is not dataclasses.MISSING else default)
        factory = dataclasses.MISSING
    return kind, default, factory
