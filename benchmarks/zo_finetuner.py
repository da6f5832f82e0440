"""ZO Fine-tuner's shipped controller against MeZO on tasks other than the one it was meta-trained on.

Runs (or reuses: finished runs are skipped) the `mezo` and `zo-finetuner` cells of a bench grid, by default
configs/bench/smollm2-135m.yaml (same seeds, budget and data for both), and prints the final training loss and
the held-out metric side by side, with how many tasks each method wins on loss (the paper: lowest loss in 82% of
model-task pairs).

    python benchmarks/zo_finetuner.py --data-dir ../shared/data
"""

from __future__ import annotations

import argparse
import statistics

from zotune.bench import collect, load_bench_config, run_grid
from zotune.methods.zo_finetuner.controller import SHIPPED, ControllerBank


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", default="configs/bench/smollm2-135m.yaml")
    parser.add_argument("--data-dir", help="overrides the grid's common data_dir")
    parser.add_argument("--controller", default=str(SHIPPED / "smollm2-135m.safetensors"),
                        help="its metadata names the meta-training task, which is left out")
    parser.add_argument("--include-meta-task", action="store_true", help="also compare on the meta-training task")
    args = parser.parse_args()

    config = load_bench_config(args.grid)
    if args.data_dir:
        config.common["data_dir"] = args.data_dir
    meta_task = ControllerBank.load(args.controller).metadata.get("task")
    config.methods = {m: s for m, s in config.methods.items() if m in ("mezo", "zo-finetuner")}
    if not args.include_meta_task:
        config.tasks = {t: s for t, s in config.tasks.items() if t != meta_task}
    run_grid(config, progress=False)
    rows = [r.row() for r in collect(config) if r.finished]

    def mean(method: str, task: str, key: str) -> float:
        return statistics.fmean(r[key] for r in rows if r["method"] == method and r["task"] == task)

    print(f"controller meta-trained on {meta_task}; {len(config.seeds)} seed(s), budget {config.budget}")
    print(f"{'task':<16} {'metric':<9} {'MeZO loss':>10} {'ZO-FT loss':>10} {'MeZO score':>11} {'ZO-FT score':>11}")
    wins = 0
    for task in config.tasks:
        losses = mean("mezo", task, "final_train_loss"), mean("zo-finetuner", task, "final_train_loss")
        scores = mean("mezo", task, "score"), mean("zo-finetuner", task, "score")
        wins += losses[1] < losses[0]
        metric = next(r["metric"] for r in rows if r["task"] == task)
        print(f"{task:<16} {metric:<9} {losses[0]:>10.4f} {losses[1]:>10.4f} {scores[0]:>11.3f} {scores[1]:>11.3f}")
    print(f"ZO Fine-tuner has the lower final training loss on {wins} of {len(config.tasks)} tasks")


if __name__ == "__main__":
    main()
