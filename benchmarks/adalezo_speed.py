"""MeZO against AdaLeZO on the default model and task, from the same seed and the same batches.

Prints, as ratios measured in this one run: the mean step time, and the wall-clock time each method needs to
bring its training loss (a trailing mean over ``--window`` steps) down to MeZO's final training loss.

    python benchmarks/adalezo_speed.py --steps 100          # about 12 minutes on 2 CPU cores
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from common import output_dir, run_parser, save_results

from zotune.bench.time_to_loss import first_reach
from zotune.train import TrainConfig, train
from zotune.train.logging import read_jsonl


def run(method: str, args: argparse.Namespace, out: Path) -> dict:
    config = TrainConfig(model=args.model, task=args.task, data_dir=args.data_dir, method=method, steps=args.steps,
                         lr=args.lr, eps=args.eps, batch_size=args.batch_size, seed=args.seed,
                         num_dev=0, num_eval=args.num_eval, eval_steps=args.steps, save_best=False,
                         output_dir=str(out / method), threads=args.threads,
                         overwrite=True)  # a rerun with the same --out replaces this benchmark's own runs
    result = train(config, progress=True)
    records = [r for r in read_jsonl(out / method / "metrics.jsonl") if r["kind"] == "train"]
    return {"losses": [r["loss"] for r in records], "seconds": [r["seconds"] for r in records],
            "forward_passes": result.forward_passes, "train_seconds": result.train_seconds,
            "zero_shot": result.zero_shot.get("eval_accuracy"), "final": result.final.get("eval_accuracy")}


def seconds_to_reach(run_: dict, target: float, window: int) -> float | None:
    curve = [{"loss": loss, "seconds": seconds} for loss, seconds in zip(run_["losses"], run_["seconds"])]
    hit = first_reach(curve, target, window)
    return None if hit is None else hit["seconds"]


def main() -> None:
    parser = run_parser(__doc__)
    parser.add_argument("--window", type=int, default=20, help="steps in the trailing mean of the training loss")
    parser.add_argument("--threads", type=int)
    args = parser.parse_args()
    out = output_dir(args, "adalezo")
    runs = {method: run(method, args, out) for method in ("mezo", "adalezo")}

    target = statistics.fmean(runs["mezo"]["losses"][-args.window:])
    step_time = {m: r["train_seconds"] / args.steps for m, r in runs.items()}
    reach = {m: seconds_to_reach(r, target, args.window) for m, r in runs.items()}
    print(f"\n{args.model} / {args.task}, {args.steps} steps, batch {args.batch_size}, lr {args.lr}, "
          f"seed {args.seed}; target = MeZO's final training loss (mean of its last {args.window}) = {target:.4f}")
    print(f"{'method':<10}{'s/step':>9}{'final loss':>12}{'s to target':>13}{'held-out acc':>14}")
    for m, r in runs.items():
        final = statistics.fmean(r["losses"][-args.window:])
        reached = f"{reach[m]:.0f}" if reach[m] is not None else "not reached"
        acc = f"{r['zero_shot']:.3f}->{r['final']:.3f}" if r["final"] is not None else "-"
        print(f"{m:<10}{step_time[m]:>9.2f}{final:>12.4f}{reached:>13}{acc:>14}")
    print(f"step time ratio (AdaLeZO / MeZO): {step_time['adalezo'] / step_time['mezo']:.3f} "
          f"(speed-up {step_time['mezo'] / step_time['adalezo']:.2f}x)")
    if reach["adalezo"] is not None:
        print(f"time-to-MeZO's-final-loss speed-up (MeZO / AdaLeZO): {reach['mezo'] / reach['adalezo']:.2f}x")
    else:
        print(f"AdaLeZO did not reach MeZO's final loss within {args.steps} steps")
    save_results(out, args, target=target, step_time=step_time, seconds_to_target=reach, runs=runs)


if __name__ == "__main__":
    main()
