"""``zotune list``: the methods, samplers, update rules, noises, tasks and built-in assets there are."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser, add_setting_flags) -> None:
    pass  # no flags


def run(args: argparse.Namespace, say) -> int:
    from zotune.assets import BUILTIN_DATASETS, BUILTIN_MODELS
    from zotune.methods import METHODS, SAMPLERS
    from zotune.optim import default_lr_eps
    from zotune.optim.updates import UPDATES
    from zotune.perturb import NOISES
    from zotune.tasks import TASKS

    say("methods:      " + ", ".join(f"{name} (lr {default_lr_eps(name)[0]:g})" for name in METHODS.names()))
    say("samplers:     " + ", ".join(SAMPLERS.names()))
    say("update rules: " + ", ".join(UPDATES.names()))
    say("noises:       " + ", ".join(NOISES.names()) + " (--noise: the distribution of z)")
    say("tasks:")
    for name in TASKS.names():
        say(f"  {name:<16} {TASKS.get(name).description}")
    say("built-in models:")
    for name, entry in BUILTIN_MODELS.items():
        say(f"  {name:<16} {entry.description}")
    say("built-in datasets:")
    for name, entry in BUILTIN_DATASETS.items():
        say(f"  {name:<16} {entry.description}")
    return 0
