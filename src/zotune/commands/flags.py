"""Flags from settings: one ``--name VALUE`` per field of a settings dataclass, typed by its annotation, and one
``--<method>-<option>`` per option of every registered method and sampler. Each flag's name, type, help and
default come from the field, so no setting is written twice."""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from typing import Any

from zotune.errors import ConfigError

__all__ = [
    "OPTION_DEST", "add_method_option_flags", "add_setting_flags", "parse_option", "train_defaults", "with_default",
]

# The dest prefix of ``--<method>-<option>`` flags: the train recipe gathers them into the method's options.
OPTION_DEST = "option:"


def add_setting_flags(parser: argparse.ArgumentParser, owner: type, *, skip: tuple[str, ...] = (),
                      former_names: dict[str, list[str]] | None = None) -> None:
    """A ``--name VALUE`` flag for each field of the dataclass ``owner`` (but ``skip``), typed by its annotation,
    with its help text and default; a renamed setting's former names are flags of it too."""
    for field in dataclasses.fields(owner):
        if field.name in skip:
            continue
        names = (field.name, *(former_names or {}).get(field.name, ()))
        default = field.default if field.default is not dataclasses.MISSING else None
        parser.add_argument(*["--" + name.replace("_", "-") for name in names], type=_field_type(field, owner),
                            metavar=field.name.upper(), help=with_default(field.metadata.get("help", ""), default))


def add_method_option_flags(parser: argparse.ArgumentParser) -> None:
    """``--<method>-<option>`` for every option of every registered method and sampler (``--ldsd-lr-mu 0``),
    the same as ``--option <option>=...``."""
    from zotune.methods import METHODS, SAMPLERS

    group = parser.add_argument_group("method and sampler options (same as --option KEY=VALUE)")
    seen = set()
    for registry in (METHODS, SAMPLERS):
        for name in registry.names():
            config_cls = registry.get(name).config_cls
            for field in dataclasses.fields(config_cls):
                flag = f"--{name}-{field.name}".replace("_", "-")
                if flag in seen:
                    continue
                seen.add(flag)
                group.add_argument(flag, dest=OPTION_DEST + field.name, type=_yaml_value, metavar="VALUE",
                                   help=f"{field.metadata.get('help', '')} (default: {field.default})")


def parse_option(text: str) -> tuple[str, Any]:
    """``--option KEY=VALUE`` -> (key, the value read as YAML)."""
    if "=" not in text:
        raise ConfigError(f"Invalid --option {text!r} (expected KEY=VALUE)")
    key, value = text.split("=", 1)
    return key.strip().replace("-", "_"), _yaml_value(value)


def train_defaults() -> dict[str, Any]:
    """``zotune train``'s default of every setting, which the other commands' flags of the same name share."""
    from zotune.train.config import TrainConfig

    return {field.name: field.default for field in dataclasses.fields(TrainConfig)}


def with_default(help_text: str, default: Any) -> str:
    # A help text that explains its own default keeps it; the others get argparse's "(default: X)" once.
    return help_text if "default" in help_text else f"{help_text} (default: {default})"


def _field_type(field: dataclasses.Field, owner: type) -> type:
    hint = typing.get_type_hints(owner)[field.name]
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        hint = args[0]
    return _floats if typing.get_origin(hint) in (list, tuple) else hint


def _floats(text: str) -> list[float]:
    """``0.9,0.999`` -> [0.9, 0.999] (list settings such as --betas)."""
    try:
        return [float(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _yaml_value(text: str) -> Any:
    from zotune.train.config import parse_yaml

    return parse_yaml(text, f"the value {text[:40]!r}")
