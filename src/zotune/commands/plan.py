"""``zotune plan``: the memory each way of fine-tuning a model needs, from its config alone, and what fits here."""

from __future__ import annotations

import argparse

from zotune.commands.flags import train_defaults
from zotune.errors import ConfigError


def add_arguments(parser: argparse.ArgumentParser, add_setting_flags) -> None:
    defaults = train_defaults()
    parser.add_argument("--model", default=defaults["model"], help="built-in name, local folder or hub id")
    parser.add_argument("--batch-size", type=int, default=defaults["batch_size"])
    parser.add_argument("--max-length", type=int, default=64,
                        help="tokens a sequence (default: 64, about the benchmark tasks' prompts)")
    parser.add_argument("--trust-remote-code", action="store_true")


def run(args: argparse.Namespace, say) -> int:
    from zotune.train.plan import available_memory, format_plan, plan_rows, read_shape

    if args.batch_size < 1 or args.max_length < 1:
        raise ConfigError(f"Invalid --batch-size {args.batch_size} or --max-length {args.max_length} (must be >= 1)")
    shape = read_shape(args.model, trust_remote_code=args.trust_remote_code)
    rows = plan_rows(shape, batch=args.batch_size, tokens=args.max_length)
    say(f"{args.model}, batch {args.batch_size} x {args.max_length} tokens (estimates: docs/scale.md)")
    for line in format_plan(shape, rows, available_memory()):
        say(line)
    return 0
