"""A grid's results: one CSV row per run, a markdown table of mean ± std over seeds, and plots."""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zotune.bench.grid import BenchConfig, RunSpec
from zotune.bench.runner import REUSED_FILE, SUMMARY
from zotune.bench.time_to_loss import FINAL_LOSS_FRACTION, final_train_loss, first_reach
from zotune.errors import StateError
from zotune.files.durable import atomic_write, atomic_write_text
from zotune.train.logging import read_jsonl
from zotune.train.machine import LOADED_MARGIN, was_loaded

__all__ = ["RunResult", "collect", "write_report", "FINAL_LOSS_FRACTION"]

CSV_FIELDS = ["method", "task", "seed", "status", "metric", "zero_shot", "score", "final_train_loss",
              "best_dev", "best_step", "steps", "forward_passes", "train_seconds", "seconds_per_step", "mean_load",
              "cpus", "cpu_model", "cpu_bf16", "loaded", "output_dir", "reused_from"]


@dataclass
class RunResult:
    run: RunSpec
    metric: str
    summary: dict[str, Any] | None  # None: the run has not finished
    curve: list[dict[str, float]]  # training records: step, loss, forward_passes, seconds
    dev_curve: list[dict[str, float]] = field(default_factory=list)  # dev scores: forward_passes, seconds, score

    @property
    def finished(self) -> bool:
        return self.summary is not None

    @property
    def reused_from(self) -> str | None:
        """The folder of another grid this run was copied from (``reuse_from``), or None for a run of its own."""
        reused = self.run.output_dir / REUSED_FILE
        return reused.read_text(encoding="utf-8").strip() if reused.is_file() else None

    def row(self) -> dict[str, Any]:
        row: dict[str, Any] = {"method": self.run.method, "task": self.run.task, "seed": self.run.seed,
                               "metric": self.metric, "output_dir": str(self.run.output_dir),
                               "status": "finished" if self.finished else "missing"}
        if not self.finished:
            return row
        summary = self.summary
        steps = summary["steps"]
        row.update(zero_shot=summary["zero_shot"].get("eval_score"), score=summary["final"].get("eval_score"),
                   final_train_loss=final_train_loss([r["loss"] for r in self.curve if r["loss"] is not None]),
                   # best_dev_accuracy: its older name in summary.json (it held F1 on QA tasks, so it was renamed)
                   best_dev=summary.get("best_dev_score", summary.get("best_dev_accuracy")),
                   best_step=summary["best_step"], steps=steps,
                   forward_passes=summary["forward_passes"], train_seconds=summary["train_seconds"],
                   seconds_per_step=summary["train_seconds"] / steps if steps else None)
        loads = [r["load"] for r in self.curve if r.get("load") is not None]
        machine = summary.get("machine", {})  # runs from before zotune recorded it have none of these
        cpus = machine.get("cpus")
        row.update(mean_load=statistics.fmean(loads) if loads else None, cpus=cpus, loaded=was_loaded(loads, cpus),
                   cpu_model=machine.get("cpu_model"),
                   cpu_bf16=" ".join(machine["cpu_bf16"]) if isinstance(machine.get("cpu_bf16"), list) else None)
        row["reused_from"] = self.reused_from
        return row


_SUMMARY_FIELDS = {"steps": int, "zero_shot": dict, "final": dict, "best_step": int, "forward_passes": int,
                   "train_seconds": (int, float)}


def _read_summary(path: Path) -> dict[str, Any]:
    """A finished run's ``summary.json``, checked for the fields the report reads."""
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise StateError(f"Corrupt {path}: {exc}; rerun that run (delete the file, or bench --force)") from exc
    wrong = [name for name, kind in _SUMMARY_FIELDS.items()
             if not isinstance(summary, dict) or not isinstance(summary.get(name), kind)]
    if wrong:
        raise StateError(f"Corrupt {path}: {', '.join(wrong)} missing or of the wrong type; rerun that run")
    return summary


def collect(config: BenchConfig) -> list[RunResult]:

    results = []
    for run in config.runs():
        summary_path, metrics_path = run.output_dir / SUMMARY, run.output_dir / "metrics.jsonl"
        summary = _read_summary(summary_path) if summary_path.is_file() else None
        curve, dev_curve = [], []
        if summary is not None and metrics_path.is_file():
            records = read_jsonl(metrics_path)
            curve = [{k: r.get(k) for k in ("step", "loss", "forward_passes", "seconds", "load")}
                     for r in records if r.get("kind") == "train"]
            dev_curve = _dev_curve(records)
        results.append(RunResult(run, run.config().parts.task.metric, summary, curve, dev_curve))
    return results


def _dev_curve(records: list[dict[str, Any]]) -> list[dict[str, float]]:
    """The dev score against training cost: the zero-shot score at 0, then every interval's (runs logged before
    dev records carried their cost have none)."""
    points = [{"forward_passes": 0, "seconds": 0.0, "score": r["dev_score"]}
              for r in records if r.get("kind") == "zero_shot" and "dev_score" in r]
    points += [{k: r[k] for k in ("forward_passes", "seconds", "score")}
               for r in records if r.get("kind") == "dev" and all(k in r for k in ("forward_passes", "seconds"))]
    return points if len(points) > 1 else []


def _csv_text(results: list[RunResult]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for result in results:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in result.row().items()})
    return buffer.getvalue()


# Two-sided 95% quantiles of Student's t by degrees of freedom (1-30); beyond, the normal's 1.96 is within 2%.
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
         2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def paired_interval(diffs: list[float]) -> tuple[float, float, float] | None:
    """Mean of paired differences with its 95% t-interval ``(mean, low, high)``; None for fewer than 2 pairs."""
    if len(diffs) < 2:
        return None
    mean = statistics.fmean(diffs)
    df = len(diffs) - 1
    half = (_T975[df - 1] if df <= len(_T975) else 1.96) * statistics.stdev(diffs) / len(diffs) ** 0.5
    return mean, mean - half, mean + half


def _interval_cell(diffs: list[float]) -> str:
    """``+1.2 [−0.4, +2.8] (W/L 5/3)``, and "not distinguishable" where the interval holds 0."""
    if not diffs:
        return "—"
    wins, losses = sum(d > 0 for d in diffs), sum(d < 0 for d in diffs)
    tally = f"{wins}/{losses}"
    found = paired_interval(diffs)
    if found is None:
        return f"{diffs[0]:+.1f} (one run; W/L {tally})"
    mean, low, high = found
    verdict = ", not distinguishable" if low <= 0 <= high else ""
    return f"{mean:+.1f} [{low:+.1f}, {high:+.1f}] (W/L {tally}{verdict})"


def _mean_std(values: list[float]) -> tuple[float, float | None]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None


def _cell(values: list[float], best: bool = False) -> str:
    if not values:
        return "—"
    mean, std = _mean_std(values)
    text = f"{mean:.3f}" if std is None else f"{mean:.3f} ± {std:.3f}"
    return f"**{text}**" if best else text


ZERO_SHOT = "zero-shot"


def _values(rows: list[dict[str, Any]], methods: list[str], method: str, task: str, key: str) -> list[float]:
    """One cell's values over seeds. The zero-shot row scores the untrained model, so it takes each seed's
    zero-shot score from the first method (in grid order) whose run on that task and seed has finished."""
    if method != ZERO_SHOT:
        return [r[key] for r in rows if r["task"] == task and r["method"] == method and r[key] is not None]
    by_seed: dict[int, float] = {}
    for r in sorted(rows, key=lambda r: methods.index(r["method"]) if r["method"] in methods else len(methods)):
        if r["task"] == task and r["zero_shot"] is not None:
            by_seed.setdefault(r["seed"], r["zero_shot"])
    return list(by_seed.values())


def _table(results: list[RunResult], config: BenchConfig, key: str, *, higher_is_better: bool,
           zero_shot_row: bool = False) -> str:
    tasks, methods = list(config.tasks), list(config.methods)
    rows = [r.row() for r in results if r.finished]

    def values(method: str, task: str) -> list[float]:
        return _values(rows, methods, method, task, key)

    metric = {r.run.task: r.metric for r in results}
    lines = ["| method | " + " | ".join(f"{t} ({metric.get(t, '')})" if key == "score" else t for t in tasks) + " |",
             "|---" * (len(tasks) + 1) + "|"]
    if zero_shot_row:
        lines.append(f"| {ZERO_SHOT} | " + " | ".join(_cell(values(ZERO_SHOT, t)) for t in tasks) + " |")
    best: dict[str, set[str]] = {}  # every method tied at the best mean is bold, not only the first listed
    for task in tasks:
        means = {m: statistics.fmean(v) for m in methods if (v := values(m, task))}
        if len(means) > 1:
            top = (max if higher_is_better else min)(means.values())
            leaders = {m for m, mean in means.items() if mean == top}
            rest = [mean for m, mean in means.items() if m not in leaders]
            # The held-out metric is bold only for a lead of at least one held-out example over the next method.
            step = 1 / _held_out_rows(results, task) if key == "score" else 0.0
            if not rest or abs(top - (max if higher_is_better else min)(rest)) >= step:
                best[task] = leaders
    for method in methods:
        lines.append(f"| {method} | " + " | ".join(_cell(values(method, t), method in best.get(t, ()))
                                                  for t in tasks) + " |")
    return "\n".join(lines)


def _held_out_rows(results: list[RunResult], task: str) -> int:
    """The held-out rows a task's runs were scored on: what their summaries record (the rows used), else the
    grid's num_eval (runs from before summaries recorded it; an upper bound where the split is smaller)."""
    counts = [r.summary.get("data", {}).get("eval") or r.run.settings.get("num_eval") or 1
              for r in results if r.finished and r.run.task == task]
    return max(1, min(counts)) if counts else 1


def _cost_table(results: list[RunResult], config: BenchConfig) -> str:
    rows = [r.row() for r in results if r.finished]
    lines = ["| method | runs | steps | forward passes | training seconds | seconds per step | timed on a loaded machine |",
             "|---|---|---|---|---|---|---|"]
    for method in config.methods:
        mine = [r for r in rows if r["method"] == method]
        if not mine:
            continue
        mean = {k: statistics.fmean(r[k] for r in mine) for k in ("steps", "forward_passes", "train_seconds",
                                                                  "seconds_per_step")}
        loaded = [r["loaded"] for r in mine]
        known = [flag for flag in loaded if flag is not None]
        load_cell = f"{sum(known)} of {len(known)}" + (f" ({len(loaded) - len(known)} not recorded)"
                                                     if len(known) < len(loaded) else "")
        lines.append(f"| {method} | {len(mine)} | {mean['steps']:.0f} | {mean['forward_passes']:.0f} | "
                     f"{mean['train_seconds']:.0f} | {mean['seconds_per_step']:.2f} | {load_cell} |")
    return "\n".join(lines)


def _reference_methods(results: list[RunResult], config: BenchConfig) -> list[str]:
    """The yardsticks that every other method is paired against: the grid's ``references``, else its first method
    label that runs plain MeZO (none when it has no such method)."""
    if config.references:
        return list(config.references)
    methods = {r.run.method: r.run.config().method for r in results}
    return [label for label in config.methods if methods.get(label) == "mezo"][:1]


def _time_to_loss_table(results: list[RunResult], config: BenchConfig, reference: str) -> str:
    """Per method and task: the forward passes and training seconds to reach the reference run's final training
    loss on the same task and seed, averaged over the seeds that reach it."""
    finished = {(r.run.method, r.run.task, r.run.seed): (r, r.row()) for r in results if r.finished}
    tasks = list(config.tasks)
    lines = ["| method | " + " | ".join(tasks) + " |", "|---" * (len(tasks) + 1) + "|"]
    for method in config.methods:
        cells = []
        for task in tasks:
            reached, tried = [], 0
            for seed in config.seeds:
                ref, run = finished.get((reference, task, seed)), finished.get((method, task, seed))
                target = ref and ref[1]["final_train_loss"]
                if run is None or target is None:
                    continue
                tried += 1
                if (hit := first_reach(run[0].curve, target)) is not None:
                    reached.append(hit | {"loaded": run[1]["loaded"]})
            if not tried:
                cells.append("—")
            elif not reached:
                cells.append(f"not reached (0/{tried})")
            else:
                passes = statistics.fmean(h["forward_passes"] for h in reached)
                seconds = statistics.fmean(h["seconds"] for h in reached)
                share = "" if len(reached) == tried else f" ({len(reached)}/{tried})"
                mark = "*" if any(h["loaded"] for h in reached) else ""
                cells.append(f"{passes:.0f} passes, {seconds:.0f} s{mark}{share}")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _versus_table(results: list[RunResult], config: BenchConfig, reference: str) -> str:
    """Each method against the reference on the same tasks and seeds: the papers' claims in one table.

    Per method, over the (task, seed) pairs where both runs finished: the held-out metric's difference in points
    (the paired mean with its 95% t-interval, wins and losses), on how many tasks its mean is higher, in how many pairs its final training loss is
    lower, its training seconds as a share of the reference's, and the speed-up to the reference's final loss in
    seconds and in forward passes (the reference's seconds or passes to reach it over the method's; median over the
    pairs that reach it, with how many do).
    """
    finished = {(r.run.method, r.run.task, r.run.seed): (r, r.row()) for r in results if r.finished}
    lines = [f"| method | held-out vs {reference} (points, paired mean [95% CI]) | tasks with a higher mean | runs with a lower final "
             f"loss | training time vs {reference} | wall-clock speed-up to {reference}'s final loss | "
             f"forward-pass speed-up to {reference}'s final loss |",
             "|---|---|---|---|---|---|---|"]
    for method in config.methods:
        if method == reference:
            continue
        pairs = [(finished[(reference, t, s)], finished[(method, t, s)]) for t in config.tasks for s in config.seeds
                 if (reference, t, s) in finished and (method, t, s) in finished]
        if not pairs:
            continue
        scored = [(ref[1], run[1]) for ref, run in pairs if ref[1]["score"] is not None and run[1]["score"] is not None]
        diffs = [100 * (run["score"] - ref["score"]) for ref, run in scored]
        by_task: dict[str, list[tuple[float, float]]] = {}
        for ref, run in scored:
            by_task.setdefault(run["task"], []).append((run["score"], ref["score"]))
        higher = sum(statistics.fmean(a for a, _ in v) > statistics.fmean(b for _, b in v) for v in by_task.values())
        losses = [(ref[1]["final_train_loss"], run[1]["final_train_loss"]) for ref, run in pairs
                  if ref[1]["final_train_loss"] is not None and run[1]["final_train_loss"] is not None]
        lower = sum(mine < theirs for theirs, mine in losses)
        time_share = (sum(run[1]["train_seconds"] for _, run in pairs)
                      / max(sum(ref[1]["train_seconds"] for ref, _ in pairs), 1e-12))
        speedups, pass_speedups, missed = [], [], 0
        for ref, run in pairs:
            target = ref[1]["final_train_loss"]
            if target is None:
                continue
            own, hit = first_reach(ref[0].curve, target), first_reach(run[0].curve, target)
            if hit is None or own is None or hit["seconds"] <= 0:
                missed += 1
                continue
            speedups.append(own["seconds"] / hit["seconds"])
            pass_speedups.append(own["forward_passes"] / hit["forward_passes"])
        points = _interval_cell(diffs)
        loaded = "*" if any(r[1]["loaded"] for pair in pairs for r in pair) else ""
        speed = (f"{statistics.median(speedups):.2f}x{loaded}" if speedups else "—") + (
            f" (not reached in {missed} of {len(pairs)})" if missed else "")
        passes = (f"{statistics.median(pass_speedups):.2f}x" if pass_speedups else "—") + (
            f" (reached in {len(pass_speedups)} of {len(pass_speedups) + missed})")
        lines.append(f"| {method} | {points} | {higher} of {len(by_task)} | {lower} of {len(losses)} | "
                     f"{time_share:.2f}{loaded} | {speed} | {passes} |")
    return "\n".join(lines)


def _paired_by_task_table(results: list[RunResult], config: BenchConfig, reference: str) -> str:
    """Each method against the reference on each task: the held-out metric's paired difference over seeds, in
    points, with its 95% interval and wins/losses."""
    finished = {(r.run.method, r.run.task, r.run.seed): r.row() for r in results if r.finished}
    tasks = list(config.tasks)
    lines = ["| method | " + " | ".join(tasks) + " |", "|---" * (len(tasks) + 1) + "|"]
    for method in config.methods:
        if method == reference:
            continue
        cells = []
        for task in tasks:
            diffs = [100 * (finished[(method, task, s)]["score"] - finished[(reference, task, s)]["score"])
                     for s in config.seeds if (method, task, s) in finished and (reference, task, s) in finished
                     and finished[(method, task, s)]["score"] is not None
                     and finished[(reference, task, s)]["score"] is not None]
            cells.append(_interval_cell(diffs))
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _markdown(results: list[RunResult], config: BenchConfig) -> str:
    (kind, amount), = config.budget.items()
    finished = sum(r.finished for r in results)
    seeds = ", ".join(map(str, config.seeds))
    reused = sum(r.finished and r.reused_from is not None for r in results)
    copies = (f" {reused} of them were finished by another grid with the same settings and copied from it "
              f"(`reused_from` in results.csv)." if reused else "")
    parts = [
        "# Benchmark results", "",
        f"Budget per run: {amount} {kind.replace('_', ' ')}; seeds {seeds}; {finished} of {len(results)} runs "
        f"finished.{copies} Cells are mean ± sample std over seeds; the best mean per task is in bold (the held-out metric's "
        f"only when it leads the next method by at least one held-out example).", "",
        "## Held-out metric", "",
        "Of the best-dev weights, or of the final ones in runs without a dev set.", "",
        _table(results, config, "score", higher_is_better=True, zero_shot_row=True), "",
        f"## Final training loss (mean over the last {FINAL_LOSS_FRACTION:.0%} of steps)", "",
        _table(results, config, "final_train_loss", higher_is_better=False), "",
        *_time_to_loss_section(results, config),
        "## Cost (mean over each method's finished runs, tasks and seeds)", "",
        f"A run was timed on a loaded machine when its mean 1-minute load average exceeded the CPU count by more "
        f"than {LOADED_MARGIN}: something else competed for the cores, and its seconds are not the method's alone.",
        "", _cost_table(results, config), "",
        "![training loss against wall-clock time](plots/loss_vs_seconds.png)", "",
        "![training loss against forward passes](plots/loss_vs_forward_passes.png)", "",
        "![held-out metric per task](plots/metric.png)", "",
        "![held-out metric against training seconds, per task](plots/heldout_vs_seconds.png)", "",
        *(["![dev metric against wall-clock time](plots/dev_vs_seconds.png)", ""]
          if any(r.dev_curve for r in results) else []),
    ]
    return "\n".join(parts)


def _time_to_loss_section(results: list[RunResult], config: BenchConfig) -> list[str]:
    return [line for reference in _reference_methods(results, config)
            for line in _against_reference(results, config, reference)]


def _against_reference(results: list[RunResult], config: BenchConfig, reference: str) -> list[str]:
    return [f"## Time to {reference}'s final training loss", "",
            f"Forward passes and training seconds until a run's loss, averaged over the same trailing window as "
            f"its final loss ({FINAL_LOSS_FRACTION:.0%} of its steps), is at or below the final training loss of "
            f"{reference} on the same task and seed; mean over the seeds that reach it (their count in brackets "
            f"when not all do). * : some of those runs were timed on a loaded machine (mean 1-minute load "
            f"above the CPU count + {LOADED_MARGIN}), so their seconds are not the method's alone.", "",
            _time_to_loss_table(results, config, reference), "",
            f"## Against {reference}, run for run", "",
            f"Over the tasks and seeds where both finished: the held-out metric's paired difference (points: the mean "
            f"with its 95% t-interval, and runs won/lost; \"not distinguishable\" where the interval holds 0), the tasks where the method's mean is higher, the runs where its final training loss is lower, "
            f"its training time as a share of {reference}'s, and the speed-up to {reference}'s final training loss "
            f"in seconds and in forward passes ({reference}'s seconds or passes to reach it over the method's; "
            f"median over the runs that reach it, with how many do). * : some runs were timed on a loaded "
            f"machine.", "",
            _versus_table(results, config, reference), "",
            f"## Against {reference}, task by task", "",
            f"The held-out metric's paired difference from {reference} on each task (points, over the seeds where "
            f"both finished): mean [95% t-interval] (runs won/lost).", "",
            _paired_by_task_table(results, config, reference), ""]


def _smoothed(values: list[float]) -> list[float]:
    out, value = [], values[0]
    for v in values:
        value = 0.9 * value + 0.1 * v
        out.append(value)
    return out


def _mean_curve(curves: list[list[dict[str, float]]], x: str, y: str = "loss",
                smooth: bool = True) -> tuple[list[float], list[float]]:
    """The seeds' y values (EMA-smoothed losses by default) and x values averaged point by point (up to the
    shortest seed's run)."""
    curves = [[r for r in c if r[y] is not None] for c in curves]
    curves = [c for c in curves if c]
    if not curves:
        return [], []
    length = min(map(len, curves))
    ys = [[r[y] for r in c[:length]] for c in curves]
    if smooth:
        ys = [_smoothed(values) for values in ys]
    xs = [statistics.fmean(c[i][x] for c in curves) for i in range(length)]
    return xs, [statistics.fmean(values[i] for values in ys) for i in range(length)]


def _task_panels(plt: Any, tasks: list[str]) -> tuple[Any, Any]:
    """A figure with one panel per task, three to a row."""
    columns = min(3, len(tasks))
    rows = math.ceil(len(tasks) / columns)
    return plt.subplots(rows, columns, figsize=(4.5 * columns, 3.4 * rows), squeeze=False)


def _save_panels(plt: Any, fig: Any, axes: Any, used: int, path: Path) -> None:
    """Blank the unused panels, put one legend for all panels on the first (a method may have no finished run on
    some task) and write the figure."""
    for ax in list(axes.flat)[used:]:
        ax.axis("off")
    labelled = {}
    for ax in axes.flat:
        labelled.update(zip(*reversed(ax.get_legend_handles_labels())))
    if labelled:
        axes.flat[0].legend(list(labelled.values()), list(labelled), fontsize=8)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)


def _plot_curves(results: list[RunResult], config: BenchConfig, x: str, label: str, path: Path, *,
                 dev: bool = False) -> None:
    """One panel per task, one line per method (mean over seeds): the EMA-smoothed training loss, or with
    ``dev`` the dev metric at each evaluation (at 0, the zero-shot score)."""
    from zotune.train.plots import pyplot

    plt = pyplot()
    tasks = list(config.tasks)
    fig, axes = _task_panels(plt, tasks)
    for ax, task in zip(axes.flat, tasks):
        for method in config.methods:
            xs, ys = _mean_curve([r.dev_curve if dev else r.curve for r in results
                                  if r.finished and r.run.task == task and r.run.method == method],
                                 x, y="score" if dev else "loss", smooth=not dev)
            if xs:
                ax.plot(xs, ys, label=method, **({"marker": "o", "markersize": 3} if dev else {}))
        ax.set_title(task)
        ax.set_xlabel(label)
        ax.set_ylabel("dev metric" if dev else "training loss (EMA 0.9)")
    _save_panels(plt, fig, axes, len(tasks), path)


def _plot_metric(results: list[RunResult], config: BenchConfig, path: Path) -> None:
    from zotune.train.plots import pyplot

    plt = pyplot()
    tasks, methods = list(config.tasks), [ZERO_SHOT, *config.methods]
    rows = [r.row() for r in results if r.finished]
    width = 0.8 / len(methods)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * len(tasks) * len(methods) * 0.5), 4))
    for i, method in enumerate(methods):
        means, stds = [], []
        for task in tasks:
            vals = _values(rows, list(config.methods), method, task, "score")
            mean, std = _mean_std(vals) if vals else (math.nan, None)
            means.append(mean)
            stds.append(std)
        positions = [t + (i - (len(methods) - 1) / 2) * width for t in range(len(tasks))]
        spread = [s or 0.0 for s in stds] if any(s is not None for s in stds) else None  # one seed: no bars
        ax.bar(positions, means, width, yerr=spread, capsize=2, label=method,
               **({"color": "lightgrey", "hatch": "//"} if method == ZERO_SHOT else {}))
    metric = {r.run.task: r.metric for r in results}
    ax.set_xticks(range(len(tasks)), [f"{t}\n({metric.get(t, '')})" for t in tasks])
    ax.set_ylabel("held-out metric")
    ax.legend(fontsize=8, ncols=min(4, len(methods)))
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)


def _plot_heldout_vs_seconds(results: list[RunResult], config: BenchConfig, path: Path) -> None:
    """One panel per task: each method's held-out metric (mean ± std over seeds) against its training seconds
    (mean ± std), the zero-shot score as a dashed line: what a method's wall-clock buys."""
    from zotune.train.plots import pyplot

    plt = pyplot()
    tasks = list(config.tasks)
    rows = [r.row() for r in results if r.finished]
    fig, axes = _task_panels(plt, tasks)
    for ax, task in zip(axes.flat, tasks):
        zero_shot = _values(rows, list(config.methods), ZERO_SHOT, task, "score")
        if zero_shot:
            ax.axhline(statistics.fmean(zero_shot), color="grey", linestyle="--", label=ZERO_SHOT)
        for method in config.methods:
            scores = _values(rows, list(config.methods), method, task, "score")
            seconds = _values(rows, list(config.methods), method, task, "train_seconds")
            if scores and seconds:
                (score, score_std), (second, second_std) = _mean_std(scores), _mean_std(seconds)
                ax.errorbar([second], [score], yerr=score_std, xerr=second_std, fmt="o", capsize=2, label=method)
        ax.set_title(task)
        ax.set_xlabel("training seconds")
        ax.set_ylabel("held-out metric")
    _save_panels(plt, fig, axes, len(tasks), path)


def write_report(config: BenchConfig) -> dict[str, Path]:
    """Write ``results.csv``, ``results.md`` and ``plots/*.png`` in the grid's output folder from whatever runs
    have finished; return their paths."""
    results = collect(config)
    out = Path(config.output_dir)
    plots = out / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    files = {"csv": out / "results.csv", "table": out / "results.md",
             "loss_vs_seconds": plots / "loss_vs_seconds.png",
             "loss_vs_forward_passes": plots / "loss_vs_forward_passes.png", "metric": plots / "metric.png",
             "heldout_vs_seconds": plots / "heldout_vs_seconds.png"}
    atomic_write_text(files["csv"], _csv_text(results))
    atomic_write_text(files["table"], _markdown(results, config))
    _plot_curves(results, config, "seconds", "training seconds", files["loss_vs_seconds"])
    _plot_curves(results, config, "forward_passes", "forward passes", files["loss_vs_forward_passes"])
    _plot_metric(results, config, files["metric"])
    _plot_heldout_vs_seconds(results, config, files["heldout_vs_seconds"])
    if any(r.dev_curve for r in results):
        files["dev_vs_seconds"] = plots / "dev_vs_seconds.png"
        _plot_curves(results, config, "seconds", "training seconds", files["dev_vs_seconds"], dev=True)
    return files
