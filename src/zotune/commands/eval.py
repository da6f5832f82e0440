"""``zotune eval``: score a model, a training checkpoint's weights or an adapter on a task's held-out or dev rows."""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

from zotune.commands.flags import train_defaults
from zotune.errors import ConfigError, StateError, ZotuneWarning


def add_arguments(parser: argparse.ArgumentParser, add_setting_flags) -> None:
    parser.add_argument("--model", required=True, help="built-in name (smollm2-135m), folder, .gguf or hub id")
    parser.add_argument("--checkpoint", help="a zotune checkpoint folder whose weights replace the model's")
    parser.add_argument("--adapter", help="a saved LoRA/prefix adapter folder (a --peft run's best/) to add to the "
                                          "model")
    # The data and its sampling default as in `zotune train`, so `eval` scores the held-out rows a run reported.
    defaults = train_defaults()
    parser.add_argument("--task", default=defaults["task"])
    parser.add_argument("--data-dir")
    parser.add_argument("--split", choices=("eval", "dev"), default="eval")
    for name in ("num_train", "num_dev", "num_eval", "data_seed", "max_length"):
        parser.add_argument("--" + name.replace("_", "-"), type=int, default=defaults[name])
    parser.add_argument("--batch-size", type=int, default=defaults["eval_batch_size"])
    parser.add_argument("--dtype", default=defaults["dtype"])
    parser.add_argument("--autocast", choices=("auto", "bfloat16", "float16", "none"), default="auto",
                        help="score with forward passes in this dtype over float32 weights, as `train --autocast` "
                             "(default: auto, bfloat16 where the hardware has bf16 instructions)")
    parser.add_argument("--trust-remote-code", action="store_true",
                        help="allow a model whose config needs custom Python code (it runs that code)")


def run(args: argparse.Namespace, say) -> int:
    from safetensors.torch import load_file

    from zotune.assets import fit_to_context, load_model
    from zotune.tasks import TASKS, encode, evaluate, load_splits, sample_splits
    from zotune.train.checkpoint import WEIGHTS, load_trainable_state
    from zotune.train.precision import check_autocast, emulated_bf16, forward_precision, resolve_autocast

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
    if slow := emulated_bf16(autocast, args.dtype):
        warnings.warn(slow, ZotuneWarning, stacklevel=2)
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
    say(f"{args.task} {args.split} ({len(rows)} examples): " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
    return 0
