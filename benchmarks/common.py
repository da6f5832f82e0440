"""What the benchmark scripts share: the flags of a run, and a training run that is scored as it goes."""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from zotune import ZOOptimizer
from zotune.assets import load_model
from zotune.tasks import (
    TASKS,
    candidate_scores,
    classification_loss,
    encode,
    evaluate,
    load_splits,
    sample_splits,
)
from zotune.train.loop import batch_indices, fresh_batch_indices


def fixed_batch(model_name: str, batch_size: int, dtype: str = "float32"):
    """The model (its weights in ``dtype``), its tokenizer, and the first ``batch_size`` training snippets of the
    default task with their labels: the one batch that the step-time and memory benchmarks run over and over."""
    model, tokenizer = load_model(model_name, dtype=dtype)
    task = TASKS.get("rotten_tomatoes")
    batch = encode(task, load_splits(task)["train"][:batch_size], tokenizer)
    return model, tokenizer, batch, torch.tensor([ex.label for ex in batch])


def run_parser(doc: str, *, steps: int = 100) -> argparse.ArgumentParser:
    """A parser with the model, data and optimizer flags every benchmark takes (defaults: the README's job)."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--task", default="rotten_tomatoes")
    parser.add_argument("--data-dir")
    parser.add_argument("--steps", type=int, default=steps)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--eps", type=float, default=1e-3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--num-train", type=int, default=1000)
    parser.add_argument("--num-eval", type=int, default=300, help="held-out examples scored")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="folder for the runs and results.json (default: a temporary folder)")
    return parser


def tracked_run(method: str, steps: int, args: argparse.Namespace, *, options: dict[str, Any] | None = None,
                eval_every: int | None = None, train_subset: int = 0,
                optimizer_options: dict[str, Any] | None = None) -> tuple[list[dict], list[dict]]:
    """Train ``method`` for ``steps`` steps on the same data and batches as every other run with these ``args``.

    Scores the held-out set at step 0, every ``eval_every`` steps and at the end; with ``train_subset`` > 0 also
    the loss on that many fixed training examples (a training loss that no method's probing biases).

    Returns:
        The evaluation records (step, forward passes, seconds of training, accuracy, train loss) and the
        method's events (e.g. DiZO's projection rounds).
    """
    model, tokenizer = load_model(args.model)
    task = TASKS.get(args.task)
    data = sample_splits(load_splits(task, args.data_dir), num_train=args.num_train, num_dev=0,
                       num_eval=args.num_eval, seed=0)
    train_ex, eval_ex = (encode(task, rows, tokenizer) for rows in (data.train, data.eval))
    pad = tokenizer.pad_token_id
    opt = ZOOptimizer(model, method, lr=args.lr, eps=args.eps, seed=args.seed, method_options=options or {},
                      **(optimizer_options or {}))

    def closure_for(indices: list[int]):
        batch = [train_ex[i] for i in indices]
        labels = torch.tensor([ex.label for ex in batch])
        return lambda: classification_loss(candidate_scores(model, batch, pad), labels)

    records, events, seconds = [], [], 0.0
    for step in tqdm(range(steps + 1), desc=method, unit="step"):
        if step == steps or step == 0 or (eval_every and step % eval_every == 0):
            record = {"step": step, "forward_passes": opt.forward_passes, "seconds": seconds,
                      "accuracy": evaluate(model, eval_ex, pad, batch_size=32)["accuracy"]}
            if train_subset:
                record["train_loss"] = evaluate(model, train_ex[:train_subset], pad, batch_size=32)["loss"]
            records.append(record)
        if step == steps:
            break
        clock = time.perf_counter()
        opt.step(closure_for(batch_indices(step, len(train_ex), args.batch_size, args.seed)),
                 fresh_closure=lambda j, step=step: closure_for(
                     fresh_batch_indices(step, j, len(train_ex), args.batch_size, args.seed)))
        seconds += time.perf_counter() - clock
        events += opt.method.report()
    return records, events


def output_dir(args: argparse.Namespace, prefix: str) -> Path:
    """``--out``, or a fresh temporary folder named after the benchmark."""
    out = Path(args.out or tempfile.mkdtemp(prefix=f"{prefix}-bench-"))
    out.mkdir(parents=True, exist_ok=True)
    return out


def save_results(out: Path, args: argparse.Namespace, **results: Any) -> None:
    """Write the arguments and results to ``out/results.json`` and say where."""
    path = out / "results.json"
    path.write_text(json.dumps({"args": vars(args), **results}, indent=1))
    print(f"results: {path}")
