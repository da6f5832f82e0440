"""The ``zotune`` command line: ``train``, ``eval``, ``replay``, ``plan``, ``push``, ``bench``, ``list``, and the
recipes plug-ins register (``zotune.recipes``: ZO Fine-tuner's ``meta-train``).

The only module that prints, reads the environment for logging, or seeds the process (with the ``run`` of a
recipe, which it calls). Every ``ZotuneError``
becomes one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import logging
import os
import signal
import statistics
import sys
import time
import types
import typing
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from zotune.errors import ConfigError, Interrupted, StateError, ZotuneError, ZotuneWarning

__all__ = ["main", "build_parser"]


def _field_type(field: dataclasses.Field, owner: type | None = None) -> type:
    hint = typing.get_type_hints(owner or _train_config_cls())[field.name]
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        hint = args[0]
    return _floats if typing.get_origin(hint) in (list, tuple) else hint


def _add_setting_flags(parser: argparse.ArgumentParser, owner: type, *, skip: tuple[str, ...] = (),
                       former_names: dict[str, list[str]] | None = None) -> None:
    """A ``--name VALUE`` flag for each field of the dataclass ``owner`` (but ``skip``), typed by its annotation,
    with its help text and default; a renamed setting's former names are flags of it too."""
    for field in dataclasses.fields(owner):
        if field.name in skip:
            continue
        names = (field.name, *(former_names or {}).get(field.name, ()))
        default = field.default if field.default is not dataclasses.MISSING else None
        parser.add_argument(*["--" + name.replace("_", "-") for name in names], type=_field_type(field, owner),
                            metavar=field.name.upper(), help=_with_default(field.metadata.get("help", ""), default))


def _floats(text: str) -> list[float]:
    """``0.9,0.999`` -> [0.9, 0.999] (list settings such as --betas)."""
    try:
        return [float(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _train_config_cls():
    from zotune.train.config import TrainConfig

    return TrainConfig


def _yaml_value(text: str) -> Any:
    from zotune.train.config import parse_yaml

    return parse_yaml(text, f"the value {text[:40]!r}")


def _parse_option(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise ConfigError(f"Invalid --option {text!r} (expected KEY=VALUE)")
    key, value = text.split("=", 1)
    return key.strip().replace("-", "_"), _yaml_value(value)


_OPTION_DEST = "option:"


def _add_method_option_flags(parser: argparse.ArgumentParser) -> None:
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
                group.add_argument(flag, dest=_OPTION_DEST + field.name, type=_yaml_value, metavar="VALUE",
                                   help=f"{field.metadata.get('help', '')} (default: {field.default})")


class _Parser(argparse.ArgumentParser):
    """argparse with zotune's error style: one line and exit 2, not the whole usage block; no abbreviated
    flags (``--out`` must not silently mean ``--output-dir``)."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        self.exit(2, f"zotune: error: {message} (see {self.prog} --help)\n")


def _with_default(help_text: str, default: Any) -> str:
    # A help text that explains its own default keeps it; the others get argparse's "(default: X)" once.
    return help_text if "default" in help_text else f"{help_text} (default: {default})"


def _say(line: str) -> None:
    """A recipe's line of output (its ``run(args, say)``), flushed so that it comes before any progress bar."""
    print(line, flush=True)


def _recipes():
    """``(name, RecipeSpec)`` of every registered recipe (the plug-ins register theirs when imported)."""
    import zotune.methods  # noqa: F401  (registers the methods' recipes)
    from zotune.recipes import RECIPES

    return [(name, RECIPES.get(name)) for name in RECIPES.names()]


def build_parser() -> argparse.ArgumentParser:
    from zotune import __version__
    from zotune.settings import RENAMED

    parser = _Parser(prog="zotune", description="Zeroth-order (forward-pass only) fine-tuning of language models.")
    parser.add_argument("--version", action="version", version=f"zotune {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="fine-tune a model on a task", argument_default=argparse.SUPPRESS)
    train.add_argument("--config", help="YAML file of settings; flags given here override it")
    former_names: dict[str, list[str]] = {}  # a renamed setting's former flag still works
    for old, new in RENAMED.items():
        former_names.setdefault(new, []).append(old)
    _add_setting_flags(train, _train_config_cls(), former_names=former_names,
                       skip=("method_options", "resume", "save_best", "overwrite", "trust_remote_code",
                             "fuse_restore"))
    _add_method_option_flags(train)
    train.add_argument("--option", action="append", metavar="KEY=VALUE",
                       help="an option of the method or its sampler, repeatable (e.g. --option sample_fraction=0.3)")
    train.add_argument("--resume", action="store_true", help="continue the run in --output-dir")
    train.add_argument("--overwrite", action="store_true",
                       help="replace a previous run's files in --output-dir (without it, such a folder is refused)")
    train.add_argument("--trust-remote-code", action="store_true",
                       help="allow a model whose config needs custom Python code (it runs that code)")
    train.add_argument("--no-save-best", dest="save_best", action="store_false",
                       help="do not write the best-dev model folder")
    train.add_argument("--no-fuse-restore", dest="fuse_restore", action="store_false",
                       help="restore and update in separate passes (the fused pass equals them up to rounding)")
    train.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")

    ev = sub.add_parser("eval", help="score a model (or a training checkpoint) on a task")
    ev.add_argument("--model", required=True, help="built-in name (smollm2-135m), folder, .gguf or hub id")
    ev.add_argument("--checkpoint", help="a zotune checkpoint folder whose weights replace the model's")
    ev.add_argument("--adapter", help="a saved LoRA/prefix adapter folder (a --peft run's best/) to add to the model")
    # The data and its sampling default as in `zotune train`, so `eval` scores the held-out rows a run reported.
    train_defaults = {f.name: f.default for f in dataclasses.fields(_train_config_cls())}
    ev.add_argument("--task", default=train_defaults["task"])
    ev.add_argument("--data-dir")
    ev.add_argument("--split", choices=("eval", "dev"), default="eval")
    for name in ("num_train", "num_dev", "num_eval", "data_seed", "max_length"):
        ev.add_argument("--" + name.replace("_", "-"), type=int, default=train_defaults[name])
    ev.add_argument("--batch-size", type=int, default=train_defaults["eval_batch_size"])
    ev.add_argument("--dtype", default=train_defaults["dtype"])
    ev.add_argument("--autocast", choices=("auto", "bfloat16", "float16", "none"), default="auto",
                    help="score with forward passes in this dtype over float32 weights, as `train --autocast` "
                         "(default: auto, bfloat16 where the hardware has bf16 instructions)")
    ev.add_argument("--trust-remote-code", action="store_true",
                    help="allow a model whose config needs custom Python code (it runs that code)")

    rp = sub.add_parser("replay", help="rebuild fine-tuned weights from the base model and a run's seed log "
                                       "(no forward pass)")
    rp.add_argument("--log", required=True, help="the run's seeds.jsonl")
    rp.add_argument("--base", help="the base model (default: the one named in the log)")
    rp.add_argument("--out", required=True, help="folder for the rebuilt model (a loadable HF folder)")
    rp.add_argument("--steps", type=int, help="replay only the first STEPS steps (e.g. the best-dev step)")
    rp.add_argument("--overwrite", action="store_true", help="replace --out if it exists and is not empty")
    rp.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")

    plan = sub.add_parser("plan", help="the memory each way of fine-tuning a model needs, from its config alone "
                                       "(no weights loaded), and whether it fits here")
    plan.add_argument("--model", default=train_defaults["model"], help="built-in name, local folder or hub id")
    plan.add_argument("--batch-size", type=int, default=train_defaults["batch_size"])
    plan.add_argument("--max-length", type=int, default=64,
                      help="tokens a sequence (default: 64, about the benchmark tasks' prompts)")
    plan.add_argument("--trust-remote-code", action="store_true")

    push = sub.add_parser("push", help="upload a run's model folder (best/, final/, a replayed one) to the "
                                       "Hugging Face hub")
    push.add_argument("folder", help="the folder to upload, e.g. runs/demo/best")
    push.add_argument("repo_id", help="the model repository, e.g. your-name/smollm2-135m-mezo-rt")
    push.add_argument("--private", action="store_true", help="create the repository private")
    push.add_argument("--revision", help="the branch to commit to (default: main)")
    push.add_argument("--commit-message", help="(default: 'Upload FOLDER (zotune)')")

    bench = sub.add_parser("bench", help="run a grid of methods x tasks x seeds from a YAML file and write a CSV, "
                                         "a markdown table and plots")
    bench.add_argument("grid", help="the grid's YAML file (see configs/bench/)")
    mode = bench.add_mutually_exclusive_group()
    mode.add_argument("--isolate", dest="isolate", action="store_true", default=None,
                      help="run each run in its own process (default: the grid's `isolate` setting)")
    mode.add_argument("--in-process", dest="isolate", action="store_false", help="run every run in this process")
    bench.add_argument("--data-dir", help="the data folder of every run (overrides the grid's common data_dir)")
    bench.add_argument("--force", action="store_true", help="rerun finished runs from scratch")
    bench.add_argument("--report-only", action="store_true",
                       help="run nothing: write the CSV, table and plots from the runs finished so far")
    bench.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")

    for name, spec in _recipes():  # the subcommands plug-ins add (zotune.recipes)
        spec_parser = sub.add_parser(name, help=spec.help, argument_default=argparse.SUPPRESS)
        importlib.import_module(spec.module).add_arguments(spec_parser, _add_setting_flags)

    sub.add_parser("list", help="list methods, update rules, noises, tasks and built-in assets")
    return parser


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


def _cmd_train(args: argparse.Namespace) -> int:
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
    options.update(_parse_option(o) for o in (getattr(args, "option", None) or []))
    for key in [k for k in settings if k.startswith(_OPTION_DEST)]:
        options[key[len(_OPTION_DEST):]] = settings.pop(key)
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
        print(f"zotune: {config.method} ({config.update}{sampler}) on {config.task} with {config.model}, "
              f"{_budget(config)}, lr {config.lr}{_schedule(config)}, eps {config.eps}, batch {config.batch_size}"
              f"{parallel}{_precision(config, precision_reason)}",
              flush=True)
    result = train(asked, progress=progress)
    if not main_process:
        return 0
    zs, fin = result.zero_shot.get("eval_score"), result.final.get("eval_score")
    metric = config.parts.task.metric
    print(f"\nHeld-out {metric} ({result.data.get('eval', config.num_eval)} examples):")
    if zs is not None:
        print(f"  zero-shot   {zs:.4f}")
    if fin is not None:
        if not result.data.get("dev", config.num_dev):
            chosen = f"final weights, step {result.steps}: no dev set to select with"
        elif config.save_best:
            chosen = f"best dev {result.best_dev_score:.4f} at step {result.best_step}" + (
                ", the zero-shot weights" if result.best_step == 0 else "")
        else:
            chosen = f"final weights, step {result.steps}"
        print(f"  fine-tuned  {fin:.4f}  ({chosen})")
    if zs is not None and fin is not None:
        print(f"  gain        {fin - zs:+.4f}")
    print(f"{result.steps} steps, {result.forward_passes} forward passes, {result.train_seconds:.0f} s training")
    phases = result.step_seconds
    if phases.get("total"):
        print("  per step:  " + ", ".join(
            f"{name} {phases[name] / result.steps:.2f} s ({100 * phases[name] / phases['total']:.0f}%)"
            for name in ("forward", "perturb", "update", "other")))
    for name, path in result.files.items():
        print(f"  {name:<10} {path}")
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from safetensors.torch import load_file

    from zotune.assets import fit_to_context, load_model
    from zotune.tasks import TASKS, encode, evaluate, load_splits, sample_splits
    from zotune.train.checkpoint import WEIGHTS, load_trainable_state
    from zotune.train.precision import check_autocast, forward_precision, resolve_autocast

    scored = "num_eval" if args.split == "eval" else "num_dev"
    bad = [f"--{name.replace('_', '-')} {getattr(args, name)}" for name in ("batch_size", "max_length", scored)
           if getattr(args, name) < 1]
    bad += [f"--{name.replace('_', '-')} {getattr(args, name)}" for name in ("num_train", "num_dev", "num_eval")
            if getattr(args, name) < 0]
    if not 0 <= args.data_seed < 2**63:
        bad.append(f"--data-seed {args.data_seed}")
    if bad:
        raise ConfigError(f"Invalid {', '.join(dict.fromkeys(bad))}: sizes must be >= 1 ({scored} too, as it is "
                          "the set scored), other counts >= 0, the data seed from 0 to 2**63 - 1")
    autocast = None if args.autocast == "none" else args.autocast
    check_autocast(autocast, args.dtype)
    autocast, _ = resolve_autocast(autocast, args.dtype)
    task = TASKS.get(args.task)
    model, tokenizer = load_model(args.model, dtype=args.dtype, trust_remote_code=args.trust_remote_code)
    if args.adapter:
        from zotune.integrations.adapters import load_adapter

        model = load_adapter(model, args.adapter)
    if args.checkpoint:
        weights = Path(args.checkpoint) / WEIGHTS
        if not weights.is_file():
            raise ConfigError(f"No {WEIGHTS} in checkpoint folder {args.checkpoint}")
        try:
            tensors = load_file(str(weights))
        except Exception as exc:  # safetensors raises its own error kinds for a damaged file
            raise StateError(f"Corrupt checkpoint weights {weights}: {exc}") from exc
        load_trainable_state(model, tensors)
    data = sample_splits(load_splits(task, args.data_dir), num_train=args.num_train, num_dev=args.num_dev,
                       num_eval=args.num_eval, seed=args.data_seed)
    rows = data.eval if args.split == "eval" else data.dev
    with forward_precision(model, autocast):
        metrics = evaluate(model, encode(task, rows, tokenizer, max_length=fit_to_context(model, args.max_length)),
                           tokenizer.pad_token_id, batch_size=args.batch_size, tokenizer=tokenizer)
    print(f"{args.task} {args.split} ({len(rows)} examples): " +
          ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
    return 0


def _cmd_replay(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from zotune.files.durable import check_writable, replace_folder
    from zotune.files.outputs import check_not_inputs
    from zotune.train.replay import load_base, replay
    from zotune.train.seedlog import read_seed_log

    log = read_seed_log(args.log)
    base = args.base or log.header["model"]
    out = Path(args.out).expanduser().resolve()
    check_not_inputs({"--out": out}, {"--log": args.log, "--base": base})
    if out == Path.cwd().resolve() or out in Path.cwd().resolve().parents:
        raise ConfigError(f"--out {args.out} is the current folder or holds it: choose a folder for the model alone")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {args.out} is a file, not a folder")
    if out.is_dir() and any(out.iterdir()) and not args.overwrite:
        raise ConfigError(f"--out {args.out} already exists and is not empty: pass --overwrite to replace it, or "
                          "choose a new folder")
    check_writable(out.parent)
    model, tokenizer = load_base(log, base)
    total = len(log.steps) if args.steps is None else args.steps
    start = time.perf_counter()
    with tqdm(total=total, disable=not args.progress, desc="replay", unit="step", dynamic_ncols=True) as bar:
        result = replay(log, model, steps=args.steps, progress=lambda done: bar.update(1))
    seconds = time.perf_counter() - start
    replace_folder(out, lambda tmp: (model.save_pretrained(tmp), tokenizer.save_pretrained(tmp)))
    print(f"Replayed {result.steps} steps of {log.path} onto {base} in {seconds:.1f} s "
          f"({log.path.stat().st_size / 1024:.1f} KiB log); model saved in {args.out}")
    if result.matches_log is None:
        print(f"  sha256 {result.sha256} (the log has no final hash for {result.steps} steps to compare with)")
    elif result.matches_log:
        print(f"  sha256 {result.sha256}: bitwise equal to the trained weights")
    else:
        raise ZotuneError(f"The replayed weights differ from the trained ones (sha256 {result.sha256[:12]}... != "
                          f"{log.end['sha256'][:12]}...): this machine's float kernels differ from the training one's")
    return 0


def _duration(seconds: float) -> str:
    minutes = seconds / 60
    return f"{minutes:.0f} min" if minutes < 90 else f"{minutes / 60:.1f} h"


def _cmd_bench(args: argparse.Namespace) -> int:
    from zotune.bench import load_bench_config, run_grid, write_report

    config = load_bench_config(args.grid)
    if args.data_dir:
        config.common["data_dir"] = args.data_dir
    failed = []
    if not args.report_only:
        # This invocation's times of whole runs, for an estimate: a resumed run did only part of its work, so its
        # time is left out rather than passed off as a run's.
        pace: dict[str, Any] = {"seconds": [], "started": None}

        def report(event: str, run, index: int, total: int) -> None:
            what = f"[{index + 1}/{total}] {run.method} on {run.task}, seed {run.seed}"
            if pace["started"] is not None and event != "skip":  # the run before this one has ended
                pace["seconds"].append(time.monotonic() - pace["started"])
                pace["started"] = None
            if event == "skip":
                print(f"{what}: finished before, skipped", flush=True)
            elif event == "resume":
                print(f"{what} -> {run.output_dir} (going on from its checkpoint)", flush=True)
            elif event == "start":
                estimate = ""
                if pace["seconds"]:
                    each = statistics.fmean(pace["seconds"])
                    estimate = (f" (runs so far took {_duration(each)} each; the {total - index} left, if alike: "
                                f"about {_duration(each * (total - index))})")
                print(f"{what} -> {run.output_dir}{estimate}", flush=True)
                pace["started"] = time.monotonic()

        outcomes = run_grid(config, isolate=args.isolate, force=args.force, progress=args.progress,
                            on_event=report)
        failed = [o for o in outcomes if o.status == "failed"]
        counts = {s: sum(o.status == s for o in outcomes) for s in ("done", "resumed", "skipped", "failed")}
        print("runs: " + ", ".join(f"{n} {s}" for s, n in counts.items() if n))
    files = write_report(config)
    print((Path(files["table"])).read_text(encoding="utf-8").split("## Final training loss")[0].rstrip())
    for name, path in files.items():
        print(f"  {name:<22} {path}")
    for outcome in failed:
        print(f"zotune: error: {outcome.run.method} on {outcome.run.task}, seed {outcome.run.seed} failed: "
              f"{outcome.message}", file=sys.stderr)
    return 1 if failed else 0


def _cmd_plan(args: argparse.Namespace) -> int:
    from zotune.train.plan import available_memory, format_plan, plan_rows, read_shape

    if args.batch_size < 1 or args.max_length < 1:
        raise ConfigError(f"Invalid --batch-size {args.batch_size} or --max-length {args.max_length} (must be >= 1)")
    shape = read_shape(args.model, trust_remote_code=args.trust_remote_code)
    rows = plan_rows(shape, batch=args.batch_size, tokens=args.max_length)
    print(f"{args.model}, batch {args.batch_size} x {args.max_length} tokens (estimates: docs/scale.md)")
    print("\n".join(format_plan(shape, rows, available_memory())))
    return 0


def _cmd_push(args: argparse.Namespace) -> int:
    from zotune.integrations.hub import push_folder

    url = push_folder(args.folder, args.repo_id, private=args.private, revision=args.revision,
                      message=args.commit_message)
    print(f"pushed {args.folder} -> {url}")
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    from zotune.assets import BUILTIN_DATASETS, BUILTIN_MODELS
    from zotune.methods import METHODS, SAMPLERS
    from zotune.optim import default_lr_eps
    from zotune.optim.updates import UPDATES
    from zotune.perturb import NOISES
    from zotune.tasks import TASKS

    print("methods:      " + ", ".join(f"{name} (lr {default_lr_eps(name)[0]:g})" for name in METHODS.names()))
    print("samplers:     " + ", ".join(SAMPLERS.names()))
    print("update rules: " + ", ".join(UPDATES.names()))
    print("noises:       " + ", ".join(NOISES.names()) + " (--noise: the distribution of z)")
    print("tasks:")
    for name in TASKS.names():
        print(f"  {name:<16} {TASKS.get(name).description}")
    print("built-in models:")
    for name, entry in BUILTIN_MODELS.items():
        print(f"  {name:<16} {entry.description}")
    print("built-in datasets:")
    for name, entry in BUILTIN_DATASETS.items():
        print(f"  {name:<16} {entry.description}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _main(argv)
    except KeyboardInterrupt as exc:  # Ctrl-C while zotune starts (importing torch) or a second signal
        signum = getattr(exc, "signum", signal.SIGINT)
        print(f"zotune: stopped ({signal.Signals(signum).name})", file=sys.stderr)
        return 128 + signum


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    warnings.simplefilter("always", ZotuneWarning)
    warnings.formatwarning = _format_warning
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        handlers = {"train": _cmd_train, "eval": _cmd_eval, "replay": _cmd_replay, "bench": _cmd_bench,
                    "plan": _cmd_plan, "push": _cmd_push, "list": _cmd_list}
        if args.command in handlers:
            return handlers[args.command](args)
        from zotune.recipes import RECIPES

        return importlib.import_module(RECIPES.get(args.command).module).run(args, _say)
    except ZotuneError as exc:
        print(f"zotune: error: {exc}", file=sys.stderr)
        return 2
    except Interrupted as exc:
        print(f"zotune: stopped: {exc}", file=sys.stderr)
        return 128 + exc.signum
    except BrokenPipeError:
        # The reader went away (`zotune list | head`): stop quietly, and keep the exit flush from failing too.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except OSError as exc:  # a full disk, a read-only folder, ...: files already written are left whole
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"zotune: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # a bug in zotune or a library: one line, and the traceback on request
        if os.environ.get("ZOTUNE_TRACEBACK"):
            raise
        first = (str(exc).strip().splitlines() or [""])[0]
        print(f"zotune: internal error: {type(exc).__name__}: {first} (please report it; set ZOTUNE_TRACEBACK=1 "
              "for the traceback)", file=sys.stderr)
        return 1


def _format_warning(message, category, filename, lineno, line=None) -> str:
    """zotune's own warnings as ``zotune: warning: ...``; another library's with its category and source, so
    they are not taken for zotune's."""
    if issubclass(category, ZotuneWarning):
        return f"zotune: warning: {message}\n"
    return f"{category.__name__} ({Path(filename).name}:{lineno}): {message}\n"


if __name__ == "__main__":
    sys.exit(main())
