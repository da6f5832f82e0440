"""The table of docs/objectives.md: what training on a metric buys against training on the loss.

Reads the runs of an objectives grid (``configs/bench/objectives-*.yaml``, one label per objective) and prints,
per label, mean ± std over seeds of: the held-out metrics before and after training, the held-out loss, the
fraction of steps whose two probes gave the same value (L+ = L-, a step that does not move), and the median abs(g).

    zotune bench configs/bench/objectives-classification.yaml
    python benchmarks/objectives.py runs/objectives-classification
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from zotune.train.seedlog import read_seed_log


def _mean_std(values: list[float], digits: int = 3) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.fmean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def run_stats(folder: Path) -> dict[str, float] | None:
    """One finished run's figures (None while it is unfinished)."""
    if not (folder / "summary.json").exists():
        return None
    summary = json.loads((folder / "summary.json").read_text())
    steps = read_seed_log(folder / "seeds.jsonl").steps
    ties = sum(1 for s in steps if s.losses[0] == s.losses[1]) / len(steps)
    stats = {"ties": ties, "median abs(g)": statistics.median(abs(g) for s in steps for g in s.grads)}
    for when, scores in (("zero-shot", summary["zero_shot"]), ("trained", summary["final"])):
        for key, value in scores.items():
            if key.startswith("eval_") and key != "eval_score":
                stats[f"{when} {key[len('eval_'):]}"] = value
    return stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bench_dir", type=Path, help="the grid's output_dir")
    args = parser.parse_args()
    rows = {}
    for label_dir in sorted((args.bench_dir / "runs").iterdir()):
        for task_dir in sorted(label_dir.iterdir()):
            runs = [run_stats(seed_dir) for seed_dir in sorted(task_dir.glob("seed*"))]
            finished = [r for r in runs if r is not None]
            if finished:
                rows[(task_dir.name, label_dir.name)] = finished
    if not rows:
        raise SystemExit(f"No finished runs under {args.bench_dir / 'runs'}")
    columns = [c for c in next(iter(rows.values()))[0] if c not in ("ties", "median abs(g)")] + ["ties", "median abs(g)"]
    print("| task | objective | seeds | " + " | ".join(c.replace("ties", "steps with L+ = L-") for c in columns)
          + " |")
    print("|---" * (len(columns) + 3) + "|")
    for (task, label), runs in rows.items():
        cells = [_mean_std([r[c] for r in runs if c in r], 1 if c == "median abs(g)" else 3) for c in columns]
        print(f"| {task} | {label} | {len(runs)} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
