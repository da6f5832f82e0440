"""``zotune replay``: rebuild a run's fine-tuned weights from its base model and seed log, with no forward pass."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from zotune.errors import ConfigError, ZotuneError


def add_arguments(parser: argparse.ArgumentParser, add_setting_flags) -> None:
    parser.add_argument("--log", required=True, help="the run's seeds.jsonl")
    parser.add_argument("--base", help="the base model (default: the one named in the log)")
    parser.add_argument("--out", required=True, help="folder for the rebuilt model (a loadable HF folder)")
    parser.add_argument("--steps", type=int, help="replay only the first STEPS steps (e.g. the best-dev step)")
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it exists and is not empty")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")


def run(args: argparse.Namespace, say) -> int:
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
    say(f"Replayed {result.steps} steps of {log.path} onto {base} in {seconds:.1f} s "
        f"({log.path.stat().st_size / 1024:.1f} KiB log); model saved in {args.out}")
    if result.matches_log is None:
        say(f"  sha256 {result.sha256} (the log has no final hash for {result.steps} steps to compare with)")
    elif result.matches_log:
        say(f"  sha256 {result.sha256}: bitwise equal to the trained weights")
    else:
        raise ZotuneError(f"The replayed weights differ from the trained ones (sha256 {result.sha256[:12]}... != "
                          f"{log.end['sha256'][:12]}...): this machine's float kernels differ from the training one's")
    return 0
