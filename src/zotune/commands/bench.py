"""``zotune bench``: run a grid of methods x tasks x seeds from a YAML file; write a CSV, a table and plots."""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any


def add_arguments(parser: argparse.ArgumentParser, add_setting_flags) -> None:
    parser.add_argument("grid", help="the grid's YAML file (see configs/bench/)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--isolate", dest="isolate", action="store_true", default=None,
                      help="run each run in its own process (default: the grid's `isolate` setting)")
    mode.add_argument("--in-process", dest="isolate", action="store_false", help="run every run in this process")
    parser.add_argument("--data-dir", help="the data folder of every run (overrides the grid's common data_dir)")
    parser.add_argument("--methods", type=_names, metavar="A,B", help="run only these of the grid's methods")
    parser.add_argument("--tasks", type=_names, metavar="A,B", help="run only these of the grid's tasks")
    parser.add_argument("--seeds", type=_seeds, metavar="0,1", help="run only these of the grid's seeds")
    parser.add_argument("--force", action="store_true", help="rerun finished runs from scratch (only those chosen)")
    parser.add_argument("--report-only", action="store_true",
                        help="run nothing: write the CSV, table and plots from the runs finished so far (the "
                             "report always covers the whole grid)")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")


def run(args: argparse.Namespace, say) -> int:
    from zotune.bench import load_bench_config, run_grid, write_report

    config = load_bench_config(args.grid)
    if args.data_dir:
        config.common["data_dir"] = args.data_dir
    chosen = config.only(methods=args.methods, tasks=args.tasks, seeds=args.seeds)  # checked with --report-only too
    failed = []
    if not args.report_only:
        _warn_if_emulated(chosen)
        outcomes = run_grid(chosen, isolate=args.isolate, force=args.force, progress=args.progress,
                            on_event=_Progress(say))
        failed = [o for o in outcomes if o.status == "failed"]
        counts = {s: sum(o.status == s for o in outcomes) for s in ("done", "resumed", "reused", "skipped", "failed")}
        say("runs: " + ", ".join(f"{n} {s}" for s, n in counts.items() if n))
    files = write_report(config)
    say(Path(files["table"]).read_text(encoding="utf-8").split("## Final training loss")[0].rstrip())
    for name, path in files.items():
        say(f"  {name:<22} {path}")
    for outcome in failed:
        say(f"zotune: error: {outcome.run.method} on {outcome.run.task}, seed {outcome.run.seed} failed: "
            f"{outcome.message}", error=True)
    return 1 if failed else 0


def _warn_if_emulated(config: Any) -> None:
    """Say once, before the first run, that the grid's bf16 is emulated on this CPU (each run says it too, deep in
    the log): a grid made on machines with bf16 units takes several times as long here."""
    import warnings

    from zotune.errors import ZotuneWarning
    from zotune.train.precision import emulated_bf16

    runs = config.runs()
    slow = [note for run in runs if (note := emulated_bf16(run.settings.get("autocast"),
                                                           run.settings.get("dtype", "float32")))]
    if slow:
        warnings.warn(f"{len(slow)} of this grid's {len(runs)} runs ask for bf16: {slow[0]}", ZotuneWarning,
                      stacklevel=3)


def _names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def _seeds(text: str) -> list[int]:
    try:
        return [int(seed) for seed in _names(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


class _Progress:
    """A line as each run starts, resumes or is skipped, with an estimate of the time left from this invocation's
    whole runs (a resumed run did only part of its work, so its time is left out rather than passed off as a
    run's)."""

    def __init__(self, say) -> None:
        self.say = say
        self.seconds: list[float] = []
        self.started: float | None = None

    def __call__(self, event: str, run: Any, index: int, total: int) -> None:
        what = f"[{index + 1}/{total}] {run.method} on {run.task}, seed {run.seed}"
        if self.started is not None and event not in ("skip", "reuse"):  # the run before this one has ended
            self.seconds.append(time.monotonic() - self.started)
            self.started = None
        if event == "skip":
            self.say(f"{what}: finished before, skipped")
        elif event == "reuse":
            self.say(f"{what}: finished by another grid with the same settings, copied -> {run.output_dir}")
        elif event == "resume":
            self.say(f"{what} -> {run.output_dir} (going on from its checkpoint)")
        elif event == "start":
            estimate = ""
            if self.seconds:
                each = statistics.fmean(self.seconds)
                estimate = (f" (runs so far took {_duration(each)} each; the {total - index} left, if alike: "
                            f"about {_duration(each * (total - index))})")
            self.say(f"{what} -> {run.output_dir}{estimate}")
            self.started = time.monotonic()


def _duration(seconds: float) -> str:
    minutes = seconds / 60
    return f"{minutes:.0f} min" if minutes < 90 else f"{minutes / 60:.1f} h"
