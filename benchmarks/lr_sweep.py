"""Which learning rate (and LDSD's η_μ) each method should default to: the table of the lr sweep.

Reads a finished or partly finished sweep (``configs/bench/lr-sweep.yaml``: one label per method and setting) and
prints, per run: its method, lr, schedule and method options, the best dev score and its step, the mean dev score
over the second half of training, and the final training loss. Per method whose runs have all finished it marks
the chosen one (``zotune.bench.sweep``: the highest late dev score, ties to the lower final training loss); the
registered defaults must match it (tests/bench/test_sweep.py).

    zotune bench configs/bench/lr-sweep.yaml --data-dir ../shared/data
    python benchmarks/lr_sweep.py [configs/bench/lr-sweep.yaml]
"""

from __future__ import annotations

import argparse

from zotune.bench.grid import load_bench_config
from zotune.bench.sweep import choose, sweep_rows


def _options(config: dict) -> str:
    return ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}"
                     for k, v in sorted(config["method_options"].items())) or "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("grid", nargs="?", default="configs/bench/lr-sweep.yaml", help="the sweep's grid file")
    args = parser.parse_args()
    rows, complete = sweep_rows(load_bench_config(args.grid))
    if not rows:
        raise SystemExit(f"No finished runs with dev evaluations for {args.grid}: run the sweep first "
                         "(see this script's docstring)")
    chosen = choose(rows)
    print("| method | label | lr | schedule | options | steps | best dev (step) | late dev | final train loss | chosen |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for row in sorted(rows, key=lambda r: (r.method, r.config["lr"], _options(r.config))):
        config = row.config
        schedule = config["lr_scheduler"] + (f" to {config['min_lr_ratio']:g}"
                                             if config["lr_scheduler"] != "constant" else "")
        mark = ("✓" if row.method in complete else "(so far)") if chosen[row.method] is row else ""
        print(f"| {row.method} | {row.label} | {config['lr']:g} | {schedule} | {_options(config)} | {row.steps} | "
              f"{row.best_dev:.3f} ({row.best_step}) | {row.late_dev:.3f} | {row.final_loss:.3f} | {mark} |")
    waiting = sorted({row.method for row in rows} - complete)
    if waiting:
        print(f"\nNot yet chosen (runs unfinished): {', '.join(waiting)}")


if __name__ == "__main__":
    main()
