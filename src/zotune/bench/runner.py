"""Run a grid: in this process or one process per run, skipping finished runs and resuming interrupted ones."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from zotune.bench.grid import BenchConfig, RunSpec
from zotune.errors import ConfigError, Interrupted, ZotuneError

__all__ = ["RunOutcome", "run_grid", "run_state"]

SUMMARY = "summary.json"
RUN_FILE = "bench-run.yaml"  # the settings an isolated run reads (and a record of what ran)
REUSED_FILE = "reused-from.txt"  # in a run copied from another grid: the folder it came from


@dataclass
class RunOutcome:
    run: RunSpec
    # done, skipped (finished before), resumed (finished now, from a checkpoint), reused (copied from a finished
    # run of another grid, ``BenchConfig.reuse_from``), failed
    status: str
    message: str = ""


def _finished_config(folder: Path) -> dict | None:
    path = folder / SUMMARY
    if not path.is_file():
        return None
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
        config = summary.get("config")
    except (OSError, ValueError, AttributeError):  # AttributeError: JSON that is not an object
        return None  # a damaged summary: the run is done again
    if not isinstance(config, dict):
        return None
    from zotune.optim import legacy_noise

    # Before zotune 0.2.0 (summaries without its version) `gaussian` named torch's generator.
    return config if "zotune_version" in summary else legacy_noise(config)


def run_state(run: RunSpec) -> str:
    """``finished`` (same settings), ``changed`` (finished with other settings), ``partial`` (a checkpoint,
    no summary) or ``new``."""
    if _finished_config(run.output_dir) is not None:
        return "changed" if _changed_keys(run) else "finished"
    return "partial" if (run.output_dir / "checkpoint").exists() else "new"


# How a run was started and where it was written, not what it computed.
_NOT_SETTINGS = ("resume", "overwrite", "output_dir")


def _changed_keys(run: RunSpec, folder: Path | None = None) -> list[str]:
    """The settings in which the run finished in ``folder`` (default: the run's own) differs from the grid's; a
    setting newer than the run's summary counts as its default."""
    from zotune.optim import draws_own_directions
    from zotune.train.config import with_defaults
    from zotune.train.precision import AUTO

    wanted = run.config().to_dict()
    finished = with_defaults(_finished_config(folder or run.output_dir) or {}, wanted)
    if wanted.get("autocast") == AUTO:  # auto's choice, made on the machine the run finished on, is kept
        wanted["autocast"] = finished.get("autocast")
    if draws_own_directions(wanted.get("method", "mezo")):  # its noise setting means nothing (an earlier default)
        wanted["noise"] = finished.get("noise")
    return sorted(k for k in set(wanted) | set(finished) if k not in _NOT_SETTINGS
                  and finished.get(k) != wanted.get(k))


def _run_in_process(run: RunSpec, resume: bool, progress: bool) -> None:
    import torch

    from zotune.train.loop import train

    torch.manual_seed(run.seed)  # as `zotune train` does for its process
    config = run.config()
    # A run folder without a checkpoint holds, at most, what an earlier grid wrote before its first checkpoint.
    config.resume, config.overwrite = resume, not resume
    train(config, progress=progress)


def _run_isolated(run: RunSpec, resume: bool, progress: bool) -> None:
    import yaml

    run.output_dir.mkdir(parents=True, exist_ok=True)
    settings_file = run.output_dir / RUN_FILE
    settings_file.write_text(yaml.safe_dump(run.settings, sort_keys=False), encoding="utf-8")
    command = [sys.executable, "-m", "zotune", "train", "--config", str(settings_file)]
    command += ["--resume"] if resume else ["--overwrite"]  # as in _run_in_process
    command += [] if progress else ["--no-progress"]
    process = subprocess.Popen(command)
    try:
        code = process.wait()
    except KeyboardInterrupt:
        # Ctrl-C reached the child too: let it save its checkpoint and exit (subprocess.run would kill it).
        # A second Ctrl-C interrupts this wait and leaves at once.
        code = process.wait()
    if code > 128:  # the child was stopped by a signal (`zotune train` exits 128 + signal number)
        raise Interrupted(f"run {run.output_dir} stopped by signal {code - 128}", code - 128)
    if code != 0:
        raise ZotuneError(f"`{' '.join(command)}` exited with code {code}")


def run_grid(config: BenchConfig, *, isolate: bool | None = None, force: bool = False, progress: bool = True,
             on_event: Callable[[str, RunSpec, int, int], None] | None = None) -> list[RunOutcome]:
    """Run every run of ``config`` that has no results yet, in order; return what happened to each.

    A run with a ``summary.json`` of the same settings is skipped; one with a checkpoint and no summary resumes
    from it. A run that fails (bad data, non-finite losses, a crashed process) is reported and the grid goes on;
    the next invocation tries it again. ``force`` reruns everything from scratch.

    A new run that a grid of ``config.reuse_from`` finished with the same settings is copied from there (its
    logs, summary and plots; no weights), with ``reused-from.txt`` naming where from.

    ``on_event(event, run, index, total)`` is told ``start`` (a run from scratch), ``resume`` (a run going on
    from its checkpoint), ``skip``, ``reuse`` and ``fail`` for progress reports.

    Raises:
        ConfigError: a finished run's settings differ from the grid's (before anything runs; pass ``force``, or
            choose another output folder).
        Interrupted: a SIGINT/SIGTERM stopped a run (its checkpoint is saved; run the grid again to go on).
    """
    isolate = config.isolate if isolate is None else isolate
    runs = config.runs()
    if not force:
        changed = [r for r in runs if run_state(r) == "changed"]
        if changed:
            raise ConfigError(
                f"{len(changed)} finished run(s) used other settings than the grid, e.g. {changed[0].output_dir} "
                f"(differs in {', '.join(_changed_keys(changed[0]))}): use --force to rerun them, or another "
                f"output_dir")
    notify = on_event or (lambda *args: None)
    outcomes = []
    for index, run in enumerate(runs):
        state = "new" if force else run_state(run)
        if state == "finished":
            notify("skip", run, index, len(runs))
            outcomes.append(RunOutcome(run, "skipped"))
            continue
        source = _reusable(run, config) if state == "new" and not force else None
        if source is not None:
            shutil.copytree(source, run.output_dir, ignore=shutil.ignore_patterns(*_WEIGHT_FOLDERS),
                            dirs_exist_ok=True)
            (run.output_dir / REUSED_FILE).write_text(f"{source}\n", encoding="utf-8")
            notify("reuse", run, index, len(runs))
            outcomes.append(RunOutcome(run, "reused", str(source)))
            continue
        if force and run.output_dir.exists():
            shutil.rmtree(run.output_dir)
        resume = state == "partial"
        notify("resume" if resume else "start", run, index, len(runs))
        try:
            (_run_isolated if isolate else _run_in_process)(run, resume, progress)
        except ZotuneError as exc:
            notify("fail", run, index, len(runs))
            outcomes.append(RunOutcome(run, "failed", str(exc)))
            continue
        if not config.keep_weights:
            _remove_weights(run)
        outcomes.append(RunOutcome(run, "resumed" if resume else "done"))
    return outcomes


def _reusable(run: RunSpec, config: BenchConfig) -> Path | None:
    """The folder of a run that a grid of ``config.reuse_from`` finished with this run's settings, if any (asked
    only for a run with nothing of its own yet)."""
    cell = run.output_dir.relative_to(config.output_dir)  # runs/<method>/<task>/seed<s>
    for grid in config.reuse_from:
        source = grid / cell
        if _finished_config(source) is not None and not _changed_keys(run, source):
            return source
    return None


# A finished run's weight folders (RUN_FILES of the training loop); its logs, summary and plots stay.
_WEIGHT_FOLDERS = ("checkpoint", "checkpoint.old", "best", "best.old", "final", "final.old")


def _remove_weights(run: RunSpec) -> None:
    """Remove the weights a run of this grid wrote (``keep_weights: false``), once its summary is there."""
    if not (run.output_dir / SUMMARY).is_file():
        return
    for name in _WEIGHT_FOLDERS:
        folder = run.output_dir / name
        if folder.is_dir():
            shutil.rmtree(folder)

