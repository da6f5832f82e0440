"""Recipes: the ``zotune`` subcommands, in the torchtune manner: the built-in ones (``zotune.commands``: ``train``,
``eval``, ``replay``, ``plan``, ``push``, ``bench``, ``list``) and those a plug-in adds (ZO Fine-tuner's
``meta-train``); the command line builds its subcommands from this registry.

A recipe is a module with ``add_arguments(parser, add_setting_flags)`` (its flags; the second argument adds one
flag per field of a settings dataclass, as ``zotune train``'s) and ``run(args, say) -> int`` (the exit code;
``say(line)`` prints, ``say(line, error=True)`` to stderr, since the command line is the only module that does;
a recipe whose flags may also come from a file sets ``parser.argument_default = argparse.SUPPRESS`` first, so
that a flag not given is absent rather than its default). A plug-in registers it by the
module's dotted path, so registering imports nothing: the command line imports the module when it builds its
parser, and a recipe may use the training components (``zotune.train``) that the plug-in itself must not import.
"""

from __future__ import annotations

from dataclasses import dataclass

from zotune.registry import Registry

__all__ = ["BUILT_IN", "RecipeSpec", "RECIPES", "register_recipe"]


@dataclass(frozen=True)
class RecipeSpec:
    """A registered recipe: the module that implements it and the one-line help ``zotune --help`` shows."""

    module: str
    help: str


RECIPES: Registry[RecipeSpec] = Registry("recipe")


def register_recipe(name: str, module: str, help: str) -> None:
    """Add the subcommand ``zotune NAME``, implemented by the module ``module`` (a dotted path)."""
    RECIPES.register(name, RecipeSpec(module, help))


# The built-in recipes, in the order `zotune --help` lists them (a plug-in's follow, by name).
BUILT_IN = {
    "train": "fine-tune a model on a task",
    "eval": "score a model (or a training checkpoint) on a task",
    "replay": "rebuild fine-tuned weights from the base model and a run's seed log (no forward pass)",
    "plan": "the memory each way of fine-tuning a model needs, from its config alone (no weights loaded), and "
            "whether it fits here",
    "push": "upload a run's model folder (best/, final/, a replayed one) to the Hugging Face hub",
    "bench": "run a grid of methods x tasks x seeds from a YAML file and write a CSV, a markdown table and plots",
    "list": "list methods, update rules, noises, tasks and built-in assets",
}
for _name, _help in BUILT_IN.items():
    register_recipe(_name, f"zotune.commands.{_name}", _help)
