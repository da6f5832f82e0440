"""MeZO against DiZO on the default model and task, from the same seed, the same batches and the same data.

Both runs score the same held-out examples every ``--eval-every`` steps. MeZO runs longer, until it has spent
as many forward passes as DiZO (whose projection rounds cost 2J passes each). Prints held-out accuracy at equal
steps and at equal forward passes, and the steps each method needs to reach MeZO's final accuracy.

    python benchmarks/dizo_accuracy.py --steps 100 --interval 50      # about 25 minutes on 2 CPU cores
"""

from __future__ import annotations

from common import output_dir, run_parser, save_results, tracked_run


def at_passes(records: list[dict], passes: int) -> dict:
    """The last evaluation made with at most ``passes`` forward passes."""
    return [r for r in records if r["forward_passes"] <= passes][-1]


def first_step_reaching(records: list[dict], accuracy: float) -> int | None:
    return next((r["step"] for r in records if r["accuracy"] >= accuracy), None)


def main() -> None:
    parser = run_parser(__doc__)
    parser.add_argument("--interval", type=int, default=50, help="DiZO's kappa")
    parser.add_argument("--probes", type=int, default=10, help="DiZO's J")
    parser.add_argument("--eval-every", type=int, default=10)
    args = parser.parse_args()

    rounds = args.steps // args.interval
    extra_steps = rounds * args.probes  # a round's 2J passes cost as much as J MeZO steps
    dizo, rounds = tracked_run("dizo", args.steps, args, options={"interval": args.interval, "probes": args.probes},
                               eval_every=args.eval_every)
    for event in rounds:
        print(f"  projection after step {event['after_step']}: ratios mean {event['ratio_mean']:.4f} "
              f"min {event['ratio_min']:.4f} max {event['ratio_max']:.4f}")
    mezo, _ = tracked_run("mezo", args.steps + extra_steps, args, eval_every=args.eval_every)
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
    save_results(output_dir(args, "dizo"), args, mezo=mezo, dizo=dizo)


if __name__ == "__main__":
    main()
