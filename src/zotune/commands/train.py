"""``zotune train``: fine-tune a model on a task (settings: flags over a YAML file over defaults)."""

from __future__ import annotations

import argparse
import os

from zotune.commands.flags import OPTION_DEST, add_method_option_flags, parse_option
from zotune.errors import ConfigError

# The flags below are written by hand (switches); every other setting is a flag made from its TrainConfig field.
_SWITCHES = ("method_options", "resume", "save_best", "overwrite", "trust_remote_code", "fuse_restore")


def add_arguments(parser: argparse.ArgumentParser, add_setting_flags) -> None:
    from zotune.settings import RENAMED
    from zotune.train.config import TrainConfig

    parser.argument_default = argparse.SUPPRESS  # a flag not given leaves the YAML file's value or the default
    parser.add_argument("--config", help="YAML file of settings; flags given here override it")
    former_names: dict[str, list[str]] = {}  # a renamed setting's former flag still works
    for old, new in RENAMED.items():
        former_names.setdefault(new, []).append(old)
    add_setting_flags(parser, TrainConfig, former_names=former_names, skip=_SWITCHES)
    add_method_option_flags(parser)
    parser.add_argument("--option", action="append", metavar="KEY=VALUE",
                        help="an option of the method or its sampler, repeatable (e.g. --option sample_fraction=0.3)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --output-dir")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a previous run's files in --output-dir (without it, such a folder is refused)")
    parser.add_argument("--trust-remote-code", action="store_true",
                        help="allow a model whose config needs custom Python code (it runs that code)")
    parser.add_argument("--no-save-best", dest="save_best", action="store_false",
                        help="do not write the best-dev model folder")
    parser.add_argument("--no-fuse-restore", dest="fuse_restore", action="store_false",
                        help="restore and update in separate passes (the fused pass equals them up to rounding)")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")


def run(args: argparse.Namespace, say) -> int:
    from zotune.train.config import TrainConfig, load_yaml_config
    from zotune.train.loop import check_names, resolve_precision, train

    values = dict(vars(args))
    progress = values.pop("progress", True)
    for key in ("command", "config", "option"):
        values.pop(key, None)
    settings = load_yaml_config(args.config) if getattr(args, "config", None) else {}
    settings.update(values)
    options = settings.get("method_options") or {}
    if not isinstance(options, dict):
        raise ConfigError(f"Invalid method_options: {options!r} (must be a mapping of option: value)")
    options = dict(options)
    options.update(parse_option(o) for o in (getattr(args, "option", None) or []))
    for key in [k for k in settings if k.startswith(OPTION_DEST)]:
        options[key[len(OPTION_DEST):]] = settings.pop(key)
    settings["method_options"] = options
    asked = TrainConfig.from_dict(settings)
    config, precision_reason = resolve_precision(asked)  # for the banner; train() resolves `asked` the same way
    check_names(config)  # before the banner, and before anything is created
    import torch

    torch.manual_seed(config.seed)  # the process is seeded once; the algorithm uses its own generators
    main_process = int(os.environ.get("RANK", "0")) == 0  # under torchrun, the first process reports
    sampler = f", sampler {config.sampler}" if config.sampler else ""
    parallel = f", {config.parallel}-parallel over {os.environ.get('WORLD_SIZE')}" if config.parallel else ""
    if main_process:
        say(f"zotune: {config.method} ({config.update}{sampler}) on {config.task} with {config.model}, "
            f"{_budget(config)}, lr {config.lr}{_schedule(config)}, eps {config.eps}, batch {config.batch_size}"
            f"{parallel}{_precision(config, precision_reason)}")
    result = train(asked, progress=progress)
    if not main_process:
        return 0
    zs, fin = result.zero_shot.get("eval_score"), result.final.get("eval_score")
    metric = config.parts.task.metric
    say("")
    say(f"Held-out {metric} ({result.data.get('eval', config.num_eval)} examples):")
    if zs is not None:
        say(f"  zero-shot   {zs:.4f}")
    if fin is not None:
        if not result.data.get("dev", config.num_dev):
            chosen = f"final weights, step {result.steps}: no dev set to select with"
        elif config.save_best:
            chosen = f"best dev {result.best_dev_score:.4f} at step {result.best_step}" + (
                ", the zero-shot weights" if result.best_step == 0 else "")
        else:
            chosen = f"final weights, step {result.steps}"
        say(f"  fine-tuned  {fin:.4f}  ({chosen})")
    if zs is not None and fin is not None:
        say(f"  gain        {fin - zs:+.4f}")
    say(f"{result.steps} steps, {result.forward_passes} forward passes, {result.train_seconds:.0f} s training")
    phases = result.step_seconds
    if phases.get("total"):
        say("  per step:  " + ", ".join(
            f"{name} {phases[name] / result.steps:.2f} s ({100 * phases[name] / phases['total']:.0f}%)"
            for name in ("forward", "perturb", "update", "other")))
    for name, path in result.files.items():
        say(f"  {name:<10} {path}")
    return 0


def _precision(config, reason: str) -> str:
    """The banner's words for the weights' dtype and the forward passes', and why they were chosen."""
    why = "" if reason == "as asked for" else f": {reason}"
    if config.autocast:
        return f", {config.dtype} weights with {config.autocast} forward passes (autocast{why})"
    return f", {config.dtype} weights and forward passes{' (' + why[2:] + ')' if why else ''}"


def _schedule(config) -> str:
    """The banner's words for a learning-rate schedule ('' for a constant rate)."""
    if config.parts.schedule.is_constant:
        return ""
    parts = [config.lr_scheduler] if config.lr_scheduler != "constant" else []
    if config.warmup_steps:
        parts.append(f"{config.warmup_steps} warm-up steps")
    if config.lr_scheduler != "constant" and config.min_lr_ratio:
        parts.append(f"floor {config.min_lr_ratio:g} x lr")
    return f" ({', '.join(parts)})"


def _budget(config) -> str:
    """``60 steps``, or with a pass or time budget ``up to 400 forward passes`` (the steps are then a ceiling)."""
    limits = [f"{config.max_forward_passes} forward passes" if config.max_forward_passes else "",
              f"{config.max_seconds:g} s" if config.max_seconds else ""]
    limits = [text for text in limits if text]
    return f"up to {' or '.join(limits)}" if limits else f"{config.steps} steps"
