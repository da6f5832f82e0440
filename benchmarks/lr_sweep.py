"""Which learning rate (and LDSD's η_μ) each method should default to: the table of the lr sweep.

Reads a finished or partly finished sweep (``configs/bench/lr-sweep.yaml``: one label per method and setting) and
prints, per run: its method, lr, schedule and method options, the best dev score and its step, the mean dev score
over the second half of training, and the final training loss. Per method it marks the run with the highest
late dev score (ties go to the lower final training loss).

Why the late mean and not the best dev score: the best of ten noisy evaluations on a small dev set rewards the
noisiest run (a large lr that oscillates) as much as the best one; the mean of the evaluations after the halfway
point rewards a setting that got somewhere and stayed there. Held-out scores are never read: they are the grid's.

    zotune bench configs/bench/lr-sweep.yaml --data-dir ../shared/data
    python benchmarks/lr_sweep.py runs/lr-sweep
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from zotune.bench.time_to_loss import final_train_loss
from zotune.train.logging import read_jsonl


def run_row(folder: Path) -> dict | None:
    """One finished run's settings and dev figures (None while it is unfinished or has no dev evaluations)."""
    if not (folder / "summary.json").is_file():
        return None
    summary = json.loads((folder / "summary.json").read_text())
    records = read_jsonl(folder / "metrics.jsonl")
    dev = [(r["step"], r["score"]) for r in records if r.get("kind") == "dev"]
    if not dev:
        return None
    steps = summary["steps"]
    late = [score for step, score in dev if step > steps / 2] or [dev[-1][1]]
    config = summary["config"]
    return {"method": config["method"], "lr": config["lr"],
            "schedule": config["lr_scheduler"] + (f" to {config['min_lr_ratio']:g}"
                                                 if config["lr_scheduler"] != "constant" else ""),
            "options": ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}"
                                 for k, v in sorted(config["method_options"].items())),
            # the loop's own choice (ties go to the lower dev loss; step 0 if nothing beat zero-shot)
            "best dev": summary["best_dev_score"], "best step": summary["best_step"],
            "late dev": statistics.fmean(late),
            "final loss": final_train_loss([r["loss"] for r in records
                                            if r.get("kind") == "train" and r.get("loss") is not None]),
            "steps": steps, "forward passes": summary["forward_passes"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bench_dir", type=Path, nargs="?", default=Path("runs/lr-sweep"))
    args = parser.parse_args()
    runs_dir = args.bench_dir / "runs"
    if not runs_dir.is_dir():
        raise SystemExit(f"No runs under {runs_dir}: run the sweep first (see this script's docstring)")
    rows = [row | {"label": label_dir.name} for label_dir in sorted(runs_dir.iterdir())
            for seed_dir in sorted(label_dir.glob("*/seed*")) if (row := run_row(seed_dir)) is not None]
    if not rows:
        raise SystemExit(f"No finished runs with dev evaluations under {runs_dir}")
    chosen = {}
    for row in rows:
        key = (row["late dev"], -row["final loss"])
        if row["method"] not in chosen or key > chosen[row["method"]][0]:
            chosen[row["method"]] = (key, row["label"])
    print("| method | label | lr | schedule | options | steps | best dev (step) | late dev | final train loss | chosen |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for row in sorted(rows, key=lambda r: (r["method"], r["lr"], r["options"])):
        mark = "✓" if chosen[row["method"]][1] == row["label"] else ""
        print(f"| {row['method']} | {row['label']} | {row['lr']:g} | {row['schedule']} | {row['options'] or '-'} | "
              f"{row['steps']} | {row['best dev']:.3f} ({row['best step']}) | {row['late dev']:.3f} | "
              f"{row['final loss']:.3f} | {mark} |")


if __name__ == "__main__":
    main()
