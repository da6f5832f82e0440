"""Gaussian against Rademacher directions for MeZO: same seed, data and batches, accuracy and loss side by side.

Rademacher directions (±1 signs, ``noise="rademacher"``) have the Gaussian's E[z z^T] = I, so the SPSA
estimate stays unbiased; they are cheaper to draw on a CPU. This script checks what they do to training: both
runs score the same held-out examples and the same fixed training subset every ``--eval-every`` steps.

    python benchmarks/directions.py --steps 100 --seeds 0 1     # about 25 minutes on 2 CPU cores
"""

from __future__ import annotations

import statistics

from common import output_dir, run_parser, save_results, tracked_run

DIRECTIONS = ("gaussian", "rademacher")


def main() -> None:
    parser = run_parser(__doc__)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--eval-every", type=int, default=25)
    parser.add_argument("--train-subset", type=int, default=200, help="fixed training examples scored for loss")
    args = parser.parse_args()

    runs: dict[str, list[list[dict]]] = {d: [] for d in DIRECTIONS}
    for seed in args.seeds:
        args.seed = seed
        for directions in DIRECTIONS:
            records, _ = tracked_run("mezo", args.steps, args, eval_every=args.eval_every,
                                     train_subset=args.train_subset, optimizer_options={"noise": directions})
            runs[directions].append(records)

    def mean_std(values: list[float]) -> str:
        spread = f" ± {statistics.stdev(values):.3f}" if len(values) > 1 else ""
        return f"{statistics.mean(values):.3f}{spread}"

    print(f"\n{args.model} / {args.task}: MeZO, {args.steps} steps, batch {args.batch_size}, lr {args.lr}, "
          f"eps {args.eps}, seeds {args.seeds}; {args.num_eval} held-out examples, loss on {args.train_subset} "
          f"fixed training examples")
    print("| directions | s/step | train loss at start | train loss at end | held-out acc at start | at end |")
    print("|---|---|---|---|---|---|")
    for directions, seeds in runs.items():
        first, last = [r[0] for r in seeds], [r[-1] for r in seeds]
        print(f"| {directions} | {mean_std([r['seconds'] / args.steps for r in last])} | "
              f"{mean_std([r['train_loss'] for r in first])} | {mean_std([r['train_loss'] for r in last])} | "
              f"{mean_std([r['accuracy'] for r in first])} | {mean_std([r['accuracy'] for r in last])} |")
    save_results(output_dir(args, "directions"), args, runs=runs)


if __name__ == "__main__":
    main()
