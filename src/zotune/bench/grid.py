"""A benchmark grid: methods × tasks × seeds from one YAML file, expanded into one ``TrainConfig`` per run.

The file::

    output_dir: runs/bench            # runs/<method>/<task>/seed<s>/, results.csv, results.md, plots/
    tasks: [sst2, rte]                # or a mapping: task -> settings for that task only
    seeds: [0, 1]
    budget: {forward_passes: 400}     # exactly one of steps, forward_passes, seconds
    isolate: false                    # true: each run in its own process
    keep_weights: true                # false: a finished run's checkpoint/ and best/ are removed (logs stay)
    reuse_from: [results/other-grid]  # other grids' output_dirs: a run finished there with the same settings is
                                      # copied (logs, no weights) instead of run again
    references: [mezo]                # the methods every other one is paired against in results.md, in order
                                      # (default: the first method that runs plain MeZO)
    common: {model: smollm2-135m, data_dir: data, eval_steps: 50}   # any `zotune train` setting
    methods:                          # label -> settings; `method` defaults to the label
      mezo: {}
      mezo-rademacher: {method: mezo, noise: rademacher}

Settings apply in the order common, task, method, then the run's own (seed, budget, output folder). Each seed
seeds both the optimizer and MeZO's train/dev/eval sampling (``seed`` and ``data_seed``), so methods see the same
data and batches under the same seed and seeds differ in their data, as in MeZO's protocol.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zotune.errors import ConfigError
from zotune.train.config import TrainConfig, load_yaml_config

__all__ = ["BUDGETS", "BenchConfig", "RunSpec", "load_bench_config"]

# budget key -> the TrainConfig field it sets. A pass or time budget leaves ``steps`` as a ceiling that no
# reasonable run reaches, so the budget is what ends it.
BUDGETS = {"steps": "steps", "forward_passes": "max_forward_passes", "seconds": "max_seconds"}
_STEP_CEILING = 1_000_000
# Settings the grid owns: a run's folder, seeds and budget come from the grid, never from a method's settings.
_GRID_OWNED = {"output_dir", "seed", "data_seed", "resume", "steps", "max_forward_passes", "max_seconds"}
_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


@dataclass(frozen=True)
class RunSpec:
    """One cell of the grid: a method label, a task, a seed, and the full settings of its training run."""

    method: str
    task: str
    seed: int
    settings: dict[str, Any]

    @property
    def output_dir(self) -> Path:
        return Path(self.settings["output_dir"])

    def config(self) -> TrainConfig:
        return TrainConfig.from_dict(dict(self.settings))


@dataclass
class BenchConfig:
    methods: dict[str, dict[str, Any]]
    tasks: dict[str, dict[str, Any]]
    seeds: list[int]
    budget: dict[str, float]
    output_dir: Path = Path("runs/bench")
    common: dict[str, Any] = field(default_factory=dict)
    isolate: bool = False
    # False: remove a run's weights (checkpoint/, best/) once its summary is written. A long grid of full
    # fine-tuning runs keeps 1 GB of weights per run otherwise; its results are in the logs.
    keep_weights: bool = True
    # Other grids' output folders: a run of this grid that one of them finished with the same settings (the same
    # method label, task and seed) is copied from there instead of run again, e.g. the MeZO cells two grids share.
    reuse_from: list[Path] = field(default_factory=list)
    # Method labels that results.md pairs every other method against (an ablation beside its method, MeZO beside
    # both); empty: the first method that runs plain MeZO.
    references: list[str] = field(default_factory=list)

    def runs(self) -> list[RunSpec]:
        """Every run of the grid, task by task, then seed, then method (so a cut-short grid has compared all
        methods on the first tasks rather than one method on all tasks)."""
        (kind, amount), = self.budget.items()
        out = []
        for task, task_settings in self.tasks.items():
            for seed in self.seeds:
                for label, method_settings in self.methods.items():
                    settings = {**self.common, **task_settings, "method": label, **method_settings, "task": task,
                                "seed": seed, "data_seed": seed,
                                "output_dir": str(self.output_dir / "runs" / label / task / f"seed{seed}")}
                    settings["steps"] = amount if kind == "steps" else _STEP_CEILING
                    if kind != "steps":
                        settings[BUDGETS[kind]] = amount
                    out.append(RunSpec(label, task, seed, settings))
        return out

    def only(self, *, methods: list[str] | None = None, tasks: list[str] | None = None,
             seeds: list[int] | None = None) -> BenchConfig:
        """The same grid cut to the named methods, tasks and seeds (None: all), each in the grid's order: its runs
        are the grid's own, with the same settings and folders, so running a part first and the rest later
        gives the grid (a long grid can run the methods that decide a question first)."""

        def pick(axis: str, names: list | None, known: list) -> list:
            if names is None:
                return known
            unknown = [name for name in names if name not in known]
            if unknown:
                raise ConfigError(f"--{axis} {','.join(map(str, unknown))}: not in the grid, whose {axis} are "
                                  f"{', '.join(map(str, known))}")
            return [name for name in known if name in names]

        return dataclasses.replace(
            self, methods={m: self.methods[m] for m in pick("methods", methods, list(self.methods))},
            tasks={t: self.tasks[t] for t in pick("tasks", tasks, list(self.tasks))},
            seeds=pick("seeds", seeds, self.seeds))


def _mapping(value: Any, where: str, other_axis: str) -> dict[str, dict[str, Any]]:
    """A list of names or a mapping name -> settings (``None`` meaning none); no entry may set the other axis of
    the grid (a method's ``task:`` would be overridden by each task's name)."""
    if isinstance(value, list):
        value = {name: {} for name in value}
    if not isinstance(value, dict) or not value:
        raise ConfigError(f"{where} must be a non-empty list of names or a mapping of name -> settings")
    out = {}
    for name, settings in value.items():
        if not isinstance(name, str) or not _LABEL.match(name):
            raise ConfigError(f"{where}: invalid name {name!r} (letters, digits and _ . + - only)")
        settings = settings or {}
        if not isinstance(settings, dict):
            raise ConfigError(f"{where}: the settings of {name!r} must be a mapping, got {settings!r}")
        if other_axis in settings:
            raise ConfigError(f"{where}: {name!r} sets {other_axis}, which the grid's {other_axis}s set; list it under "
                              f"{other_axis}s instead")
        owned = sorted(_GRID_OWNED & set(settings))
        if owned:
            raise ConfigError(f"{where}: {name!r} sets {owned}, which the grid sets itself (use seeds and budget)")
        out[name] = dict(settings)
    return out


def load_bench_config(path: str | Path) -> BenchConfig:
    """Read and check a grid file; every run's settings are validated before anything runs."""
    values = load_yaml_config(path)
    known = {"methods", "tasks", "seeds", "budget", "output_dir", "common", "isolate", "keep_weights", "reuse_from",
             "references"}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {unknown}; allowed: {', '.join(sorted(known))}")
    missing = sorted({"methods", "tasks", "budget"} - set(values))
    if missing:
        raise ConfigError(f"{path}: missing {missing}")
    seeds = values.get("seeds", [0])
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) and s >= 0 for s in seeds) \
            or len(set(seeds)) != len(seeds):
        raise ConfigError(f"{path}: seeds must be a list of distinct integers >= 0, got {seeds!r}")
    budget = values["budget"]
    if not isinstance(budget, dict) or len(budget) != 1 or not set(budget) <= set(BUDGETS):
        raise ConfigError(f"{path}: budget must give exactly one of {', '.join(BUDGETS)} "
                          f"(e.g. budget: {{forward_passes: 400}}), got {budget!r}")
    common = values.get("common") or {}
    if not isinstance(common, dict):
        raise ConfigError(f"{path}: common must be a mapping of `zotune train` settings")
    owned = sorted(_GRID_OWNED & set(common))
    if owned:
        raise ConfigError(f"{path}: common sets {owned}, which the grid sets itself (use seeds and budget)")
    isolate, keep_weights = values.get("isolate", False), values.get("keep_weights", True)
    for name, value in (("isolate", isolate), ("keep_weights", keep_weights)):
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: {name} must be true or false, got {value!r}")
    output_dir = Path(values.get("output_dir", "runs/bench"))
    reuse_from = values.get("reuse_from") or []
    if not isinstance(reuse_from, list) or not all(isinstance(folder, str) and folder for folder in reuse_from):
        raise ConfigError(f"{path}: reuse_from must be a list of other grids' output folders, got {reuse_from!r}")
    if any(Path(folder) == output_dir for folder in reuse_from):
        raise ConfigError(f"{path}: reuse_from names the grid's own output_dir ({output_dir})")
    methods = _mapping(values["methods"], f"{path}: methods", "task")
    references = values.get("references") or []
    if not isinstance(references, list) or not all(isinstance(label, str) for label in references) \
            or len(set(references)) != len(references):
        raise ConfigError(f"{path}: references must be a list of distinct method labels, got {references!r}")
    unknown_references = [label for label in references if label not in methods]
    if unknown_references:
        raise ConfigError(f"{path}: references names {unknown_references}, which are not among the grid's methods "
                          f"({', '.join(methods)})")
    config = BenchConfig(methods=methods,
                         tasks=_mapping(values["tasks"], f"{path}: tasks", "method"), seeds=seeds, budget=dict(budget),
                         output_dir=output_dir, common=dict(common), isolate=isolate, keep_weights=keep_weights,
                         reuse_from=[Path(folder) for folder in reuse_from], references=references)
    for run in config.runs():  # bad settings and unknown names fail here rather than after hours of other runs
        try:
            run.config()
        except ConfigError as exc:
            raise ConfigError(f"{path}: run {run.method}/{run.task}/seed{run.seed}: {exc}") from None
    return config
