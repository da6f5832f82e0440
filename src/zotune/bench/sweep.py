"""The learning-rate sweep's choice: per method, the setting with the best late dev score.

A sweep is a grid (``configs/bench/lr-sweep.yaml``) with one label per method and setting, on one task's dev set.
The choice rule: the highest mean dev score over the second half of training, ties going to the lower final
training loss. Why the late mean and not the best dev score: the best of ten noisy evaluations on a small dev set
rewards the noisiest run (a large lr that oscillates) as much as the best one; the mean of the evaluations after
the halfway point rewards a setting that got somewhere and stayed there. Held-out scores are never read: they
belong to the results grid.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from typing import Any

from zotune.bench.grid import BenchConfig, RunSpec
from zotune.bench.time_to_loss import final_train_loss
from zotune.train.logging import read_jsonl

__all__ = ["SweepRow", "sweep_row", "sweep_rows", "choose"]


@dataclass(frozen=True)
class SweepRow:
    """One finished sweep run: its label, settings and dev figures."""

    label: str
    method: str
    config: dict[str, Any]
    best_dev: float
    best_step: int
    late_dev: float
    final_loss: float
    steps: int
    forward_passes: int

    @property
    def key(self) -> tuple[float, float]:
        """What the choice maximises: the late dev score, then the lower final training loss."""
        return (self.late_dev, -self.final_loss)


def sweep_row(run: RunSpec) -> SweepRow | None:
    """A finished run's row (None while it is unfinished or has no dev evaluations)."""
    folder = run.output_dir
    if not (folder / "summary.json").is_file():
        return None
    summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
    records = read_jsonl(folder / "metrics.jsonl")
    dev = [(r["step"], r["score"]) for r in records if r.get("kind") == "dev"]
    if not dev:
        return None
    steps = summary["steps"]
    late = [score for step, score in dev if step > steps / 2] or [dev[-1][1]]
    losses = [r["loss"] for r in records if r.get("kind") == "train" and r.get("loss") is not None]
    return SweepRow(label=run.method, method=summary["config"]["method"], config=summary["config"],
                    best_dev=summary["best_dev_score"], best_step=summary["best_step"],
                    late_dev=statistics.fmean(late), final_loss=final_train_loss(losses), steps=steps,
                    forward_passes=summary["forward_passes"])


def sweep_rows(config: BenchConfig) -> tuple[list[SweepRow], set[str]]:
    """The finished runs' rows, and the methods whose runs have all finished (only those can be chosen for)."""
    rows, unfinished = [], set()
    for run in config.runs():
        row = sweep_row(run)
        if row is None:
            unfinished.add(run.config().method)
        else:
            rows.append(row)
    return rows, {row.method for row in rows} - unfinished


def choose(rows: list[SweepRow]) -> dict[str, SweepRow]:
    """Per method, its row with the highest ``key``."""
    chosen: dict[str, SweepRow] = {}
    for row in rows:
        if row.method not in chosen or row.key > chosen[row.method].key:
            chosen[row.method] = row
    return chosen
