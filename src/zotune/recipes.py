"""Recipes: the ``zotune`` subcommands a plug-in adds (ZO Fine-tuner's ``meta-train``), in the torchtune manner.

A recipe is a module with ``add_arguments(parser, add_setting_flags)`` (its flags; the second argument adds one
flag per field of a settings dataclass, as ``zotune train``'s) and ``run(args, say) -> int`` (the exit code;
``say(line)`` prints, since the command line is the only module that does). A plug-in registers it by the
module's dotted path, so registering imports nothing: the command line imports the module when it builds its
parser, and a recipe may use the training components (``zotune.train``) that the plug-in itself must not import.
"""

from __future__ import annotations

from dataclasses import dataclass

from zotune.registry import Registry

__all__ = ["RecipeSpec", "RECIPES", "register_recipe"]


@dataclass(frozen=True)
class RecipeSpec:
    """A registered recipe: the module that implements it and the one-line help ``zotune --help`` shows."""

    module: str
    help: str


RECIPES: Registry[RecipeSpec] = Registry("recipe")


def register_recipe(name: str, module: str, help: str) -> None:
    """Add the subcommand ``zotune NAME``, implemented by the module ``module`` (a dotted path)."""
    RECIPES.register(name, RecipeSpec(module, help))
