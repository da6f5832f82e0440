"""LDSD against MeZO and against LDSD's best-of-K ablation (lr_mu = 0), at an equal budget of forward passes.

A MeZO step costs 2 forward passes, an LDSD step K + 1: with a budget of F passes MeZO takes F/2 steps and
LDSD F/(K+1). All runs use the same seed, data and batch order. Prints held-out accuracy and the loss on a fixed
subset of training examples (the step losses of best-of-K are biased low, so they are not compared).

    python benchmarks/ldsd_budget.py --budget 180        # about 30 minutes on 2 CPU cores
"""

from __future__ import annotations

from common import output_dir, run_parser, save_results, tracked_run


def main() -> None:
    parser = run_parser(__doc__)
    parser.add_argument("--budget", type=int, default=180, help="forward passes per run")
    parser.add_argument("--candidates", type=int, default=5, help="LDSD's K")
    parser.add_argument("--lr-mu", type=float, default=2e-3, help="LDSD's eta_mu")
    parser.add_argument("--train-subset", type=int, default=200, help="training examples for the loss")
    args = parser.parse_args()

    k = args.candidates
    runs = {
        "mezo": ("mezo", args.budget // 2, {}),
        "ldsd": ("ldsd", args.budget // (k + 1), {"candidates": k, "lr_mu": args.lr_mu}),
        "ldsd lr_mu=0": ("ldsd", args.budget // (k + 1), {"candidates": k, "lr_mu": 0.0}),
    }
    results = {}
    for label, (method, steps, options) in runs.items():
        records, _ = tracked_run(method, steps, args, options=options, train_subset=args.train_subset)
        results[label] = {"steps": steps, "records": records}

    zero = results["mezo"]["records"][0]
    print(f"\n{args.model} / {args.task}: budget {args.budget} forward passes, batch {args.batch_size}, "
          f"lr {args.lr}, eps {args.eps}, seed {args.seed}, K {k}, lr_mu {args.lr_mu}; "
          f"{args.num_eval} held-out examples, train loss on {args.train_subset} training examples")
    print(f"{'run':<14}{'steps':>7}{'passes':>8}{'held-out acc':>14}{'train loss':>12}{'s training':>12}")
    print(f"{'zero-shot':<14}{0:>7}{0:>8}{zero['accuracy']:>14.3f}{zero['train_loss']:>12.4f}{'':>12}")
    for label, result in results.items():
        last = result["records"][-1]
        print(f"{label:<14}{result['steps']:>7}{last['forward_passes']:>8}{last['accuracy']:>14.3f}"
              f"{last['train_loss']:>12.4f}{last['seconds']:>12.0f}")
    save_results(output_dir(args, "ldsd"), args, runs=results)


if __name__ == "__main__":
    main()
