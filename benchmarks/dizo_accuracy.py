"""MeZO against DiZO on the default model and task, from the same seed, the same batches and the same data.

Both runs score the same held-out examples every ``--eval-every`` steps. MeZO runs longer, until it has spent
as many forward passes as DiZO (whose projection rounds cost 2J passes each). Prints held-out accuracy at equal
steps and at equal forward passes, and the steps each method needs to reach MeZO's final accuracy.

    python benchmarks/dizo_accuracy.py --steps 100 --interval 50      # about 25 minutes on 2 CPU cores
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from common import run_parser
from tqdm.auto import tqdm

from zotune import ZOOptimizer
from zotune.assets import load_model
from zotune.perturb import mix_seed
from zotune.tasks import (
    TASKS,
    candidate_scores,
    classification_loss,
    encode,
    evaluate,
    load_splits,
    sample_mezo,
)
from zotune.train.loop import batch_indices


def run(method: str, steps: int, args: argparse.Namespace) -> list[dict]:
    """Train ``method`` for ``steps`` steps; returns one record per evaluation (step, passes, accuracy)."""
    model, tokenizer = load_model(args.model)
    task = TASKS.get(args.task)
    data = sample_mezo(load_splits(task, args.data_dir), num_train=args.num_train, num_dev=0,
                       num_eval=args.num_eval, seed=0)
    train_ex, eval_ex = (encode(task, rows, tokenizer) for rows in (data.train, data.eval))
    pad = tokenizer.pad_token_id
    options = {"interval": args.interval, "probes": args.probes} if method == "dizo" else {}
    opt = ZOOptimizer(model, method, lr=args.lr, eps=args.eps, seed=args.seed, method_options=options)

    def closure_for(indices):
        batch = [train_ex[i] for i in indices]
        labels = torch.tensor([ex.label for ex in batch])
        return lambda: classification_loss(candidate_scores(model, batch, pad), labels)

    records, rounds, seconds = [], [], 0.0
    for step in tqdm(range(steps + 1), desc=method, unit="step"):
        if step % args.eval_every == 0 or step == steps:
            acc = evaluate(model, eval_ex, pad, batch_size=32)["accuracy"]
            records.append({"step": step, "forward_passes": opt.forward_passes, "accuracy": acc,
                            "seconds": seconds})
        if step == steps:
            break
        fresh_seed = mix_seed(args.seed, step, 0xF4E5)
        clock = time.perf_counter()
        opt.step(closure_for(batch_indices(step, len(train_ex), args.batch_size, args.seed)),
                 fresh_closure=lambda j, s=fresh_seed: closure_for(batch_indices(j, len(train_ex), args.batch_size, s)))
        seconds += time.perf_counter() - clock
        rounds += opt.method.report()
    for event in rounds:
        print(f"  projection after step {event['after_step']}: ratios mean {event['ratio_mean']:.4f} "
              f"min {event['ratio_min']:.4f} max {event['ratio_max']:.4f}")
    return records


def at_passes(records: list[dict], passes: int) -> dict:
    """The last evaluation made with at most ``passes`` forward passes."""
    return [r for r in records if r["forward_passes"] <= passes][-1]


def first_step_reaching(records: list[dict], accuracy: float) -> int | None:
    return next((r["step"] for r in records if r["accuracy"] >= accuracy), None)


def main() -> None:
    parser = run_parser(__doc__)
    parser.add_argument("--interval", type=int, default=50, help="DiZO's kappa")
    parser.add_argument("--probes", type=int, default=10, help="DiZO's J")
    parser.add_argument("--num-train", type=int, default=1000)
    parser.add_argument("--num-eval", type=int, default=300)
    parser.add_argument("--eval-every", type=int, default=10)
    args = parser.parse_args()

    rounds = args.steps // args.interval
    extra_steps = rounds * args.probes  # a round's 2J passes cost as much as J MeZO steps
    dizo = run("dizo", args.steps, args)
    mezo = run("mezo", args.steps + extra_steps, args)
    equal_steps = {"mezo": [r for r in mezo if r["step"] <= args.steps][-1], "dizo": dizo[-1]}
    passes = dizo[-1]["forward_passes"]
    target = equal_steps["mezo"]["accuracy"]

    print(f"\n{args.model} / {args.task}: {args.steps} steps, batch {args.batch_size}, lr {args.lr}, "
          f"seed {args.seed}, DiZO kappa {args.interval}, J {args.probes}; {args.num_eval} held-out examples")
    print(f"zero-shot accuracy {mezo[0]['accuracy']:.3f}")
    print(f"at equal steps ({args.steps}):   MeZO {equal_steps['mezo']['accuracy']:.3f}   "
          f"DiZO {equal_steps['dizo']['accuracy']:.3f}")
    print(f"at equal forward passes ({passes}):   MeZO {at_passes(mezo, passes)['accuracy']:.3f} "
          f"(step {at_passes(mezo, passes)['step']})   DiZO {dizo[-1]['accuracy']:.3f}")
    for name, records in (("MeZO", mezo), ("DiZO", dizo)):
        step = first_step_reaching(records, target)
        shown = f"step {step}" if step is not None else "not reached"
        print(f"steps to reach MeZO's accuracy at step {args.steps} ({target:.3f}): {name} {shown}")
    out = Path(args.out or tempfile.mkdtemp(prefix="dizo-bench-"))
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps({"args": vars(args), "mezo": mezo, "dizo": dizo}, indent=1))
    print(f"results: {out / 'results.json'}")


if __name__ == "__main__":
    main()
