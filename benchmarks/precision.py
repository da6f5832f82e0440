"""Held-out accuracy and final training loss of the README's main job in fp32 and under bf16 autocast.

Runs (or reuses: finished runs are skipped) ``configs/bench/precision.yaml`` and prints, per precision, the held-out
accuracy and final training loss (mean ± std over 3 seeds), their paired differences (bf16 minus fp32, with a 95%
interval), the seconds per step, and the CPU: the evidence behind ``autocast: auto``.

    python benchmarks/precision.py     # Rotten Tomatoes is built in: no --data-dir
"""

from __future__ import annotations

import argparse
import statistics

from zotune.bench import load_bench_config, run_grid
from zotune.bench.report import _interval_cell, collect
from zotune.train.machine import cpu_info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", default="configs/bench/precision.yaml")
    parser.add_argument("--data-dir", help="a data folder that has rotten_tomatoes/ (by default the built-in data)")
    args = parser.parse_args()
    config = load_bench_config(args.grid)
    if args.data_dir:
        config.common["data_dir"] = args.data_dir
    failed = [o for o in run_grid(config, progress=False) if o.status == "failed"]
    for outcome in failed:
        print(f"{outcome.run.method}, seed {outcome.run.seed} failed: {outcome.message}")
    rows = {(r.run.method, r.run.seed): r.row() for r in collect(config) if r.finished}
    info = cpu_info()
    print(f"CPU: {info['cpu_model']} (bf16 flags: {', '.join(info['cpu_bf16']) or 'none'})")
    print("| precision | held-out accuracy | final training loss | seconds per step |")
    print("|---|---|---|---|")
    for label in config.methods:
        runs = [rows[(label, s)] for s in config.seeds if (label, s) in rows]
        if not runs:
            continue

        def cell(key, runs=runs):
            values = [r[key] for r in runs if r[key] is not None]
            return f"{statistics.fmean(values):.4f} ± {statistics.stdev(values):.4f}" if len(values) > 1 else \
                (f"{values[0]:.4f}" if values else "—")
        print(f"| {label} | {cell('score')} | {cell('final_train_loss')} | {cell('seconds_per_step')} |")
    pairs = [(rows[("fp32", s)], rows[("bf16-autocast", s)]) for s in config.seeds
             if ("fp32", s) in rows and ("bf16-autocast", s) in rows]
    if pairs:
        print(f"bf16 - fp32, held-out points: {_interval_cell([100 * (b['score'] - a['score']) for a, b in pairs])}")
    if failed:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
