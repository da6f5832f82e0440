"""The training loop: one explicit function from a ``TrainConfig`` to a trained model and its metrics."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import shutil
import signal
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from zotune.assets import fit_to_context, load_model, resolve_model_path
from zotune.errors import ConfigError, Interrupted, NonFiniteLossError, StateError, ZotuneWarning
from zotune.files.durable import (
    atomic_write,
    atomic_write_text,
    check_writable,
    previous_folder,
    replace_folder,
)
from zotune.files.outputs import FolderLock, check_not_inputs, existing_outputs, remove_outputs
from zotune.integrations.adapters import apply_peft
from zotune.optim import ZOConfig, ZOOptimizer, draws_own_directions, legacy_noise
from zotune.optim.distributed import close_parallel, init_parallel, mean_over_ranks, sum_over_ranks
from zotune.perturb import mix_seed
from zotune.tasks import (
    encode,
    evaluate,
    load_splits,
    sample_splits,
)
from zotune.tasks.data import TaskData
from zotune.tasks.objectives import check_objective, objective_fn
from zotune.train.card import model_card
from zotune.train.checkpoint import (
    LOOP,
    find_checkpoint,
    load_best,
    load_checkpoint,
    save_checkpoint,
)
from zotune.train.config import TrainConfig, with_defaults
from zotune.train.logging import FanOut, JsonlLogger, MetricLogger, NullLogger, read_jsonl, tracker_loggers
from zotune.train.machine import load_average, machine_info
from zotune.train.plots import plot_layer_draws, plot_training
from zotune.train.precision import AUTO, emulated_bf16, fastest_autocast, forward_precision
from zotune.train.schedule import budget_progress
from zotune.train.seedlog import SeedLogWriter, read_seed_log
from zotune.train.signals import StopRequests

__all__ = ["train", "check_names", "TrainResult", "batch_indices", "fresh_batch_indices", "truncate_log", "run_fingerprint",
           "RUN_FILES"]

log = logging.getLogger(__name__)

_FRESH_STREAM = 0xF4E5  # seeds the fresh-batch stream, apart from the training batches' epochs


@dataclass
class TrainResult:
    # The rows the run used, after sampling: a split shorter than asked for gives fewer than --num-*.
    data: dict[str, int] = field(default_factory=dict)
    zero_shot: dict[str, float] = field(default_factory=dict)
    final: dict[str, float] = field(default_factory=dict)
    best_dev_score: float = float("nan")
    best_step: int = 0
    steps: int = 0
    forward_passes: int = 0
    train_seconds: float = 0.0
    # Seconds per phase of the optimizer steps (forward, perturb, update, other), summed over the run's steps.
    step_seconds: dict[str, float] = field(default_factory=dict)
    output_dir: str = ""
    files: dict[str, str] = field(default_factory=dict)
    machine: dict[str, Any] = field(default_factory=dict)  # CPUs, threads, device: what the seconds were taken on
    # The forward passes' precision and why it was chosen (autocast: auto picks by hardware).
    precision: dict[str, str] = field(default_factory=dict)


def batch_indices(step: int, num_examples: int, batch_size: int, seed: int) -> list[int]:
    """Example indices of step ``step``: epochs are seeded permutations, so any step's batch is known without
    replaying the ones before it (which makes resuming exact)."""
    orders: dict[int, torch.Tensor] = {}
    out = []
    for position in range(step * batch_size, (step + 1) * batch_size):
        epoch, offset = divmod(position, num_examples)
        if epoch not in orders:
            generator = torch.Generator().manual_seed(mix_seed(seed, epoch))
            orders[epoch] = torch.randperm(num_examples, generator=generator)
        out.append(int(orders[epoch][offset]))
    return out


def fresh_batch_indices(step: int, probe: int, num_examples: int, batch_size: int, seed: int) -> list[int]:
    """Indices of the ``probe``-th fresh batch of step ``step`` (DiZO's projection probes): a stream of its own,
    apart from the training batches, and stateless like them, so a resumed run draws the same ones."""
    return batch_indices(probe, num_examples, batch_size, mix_seed(seed, step, _FRESH_STREAM))


def truncate_log(path: Path, step: int) -> None:
    """Drop records written after the checkpoint at ``step`` (a run killed between checkpoints logged steps
    that the resumed run will log again)."""
    if path.exists():
        kept = [r for r in read_jsonl(path) if r.get("step", 0) <= step and r.get("kind") != "final"]
        atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in kept))


# Everything a run writes in its output folder: a new run refuses a folder holding any of them (unless told to
# overwrite, and then removes only these), so nothing else in the folder is ever touched.
RUN_FILES = ("seeds.jsonl", "metrics.jsonl", "summary.json", "loss.png", "layers.png", "checkpoint",
             "checkpoint.old", "checkpoint.partial", "best", "best.old", "best.partial", "final", "final.old",
             "final.partial", "tensorboard", "wandb", "offload")
# Settings a resumed run may change: none of them changes the weights a step produces.
RESUMABLE = frozenset({"steps", "max_forward_passes", "max_seconds", "eval_steps", "log_steps", "eval_batch_size",
                       "output_dir", "resume", "overwrite", "save_best", "threads", "data_dir", "trust_remote_code",
                       "report_to"})


def run_fingerprint(config: TrainConfig, model_name: str, data: TaskData) -> dict[str, Any]:
    """What a checkpoint must have been made with to be resumed: every setting outside ``RESUMABLE`` and a
    SHA-256 of the sampled rows (train, dev, eval), so an edited label or another data seed is caught."""
    # A decaying schedule spreads over the budget, so then the budget shapes every step's learning rate too.
    resumable = RESUMABLE if config.parts.schedule.is_constant else RESUMABLE - {"steps", "max_forward_passes"}
    settings = {k: v for k, v in config.to_dict().items() if k not in resumable}
    settings["model"] = model_name
    rows = json.dumps([data.train, data.dev, data.eval], sort_keys=True, ensure_ascii=False, default=str)
    from zotune import __version__  # dates the settings' names (see _saved_settings)

    return {"settings": settings, "data_sha256": hashlib.sha256(rows.encode("utf-8")).hexdigest(),
            "zotune_version": __version__}


def fingerprint_sha256(fingerprint: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(fingerprint, sort_keys=True).encode("utf-8")).hexdigest()


def _check_fingerprint(folder: Path, saved: dict[str, Any] | None, current: dict[str, Any]) -> None:
    """Refuse to resume a checkpoint made with other settings or data, naming what differs."""
    if saved is None:
        warnings.warn(f"The checkpoint in {folder} predates run fingerprints: its settings and data cannot be "
                      "checked against this run's", ZotuneWarning, stacklevel=3)
        return
    if not isinstance(saved, dict) or not isinstance(saved.get("settings"), dict):
        raise StateError(f"Corrupt checkpoint in {folder}: its run fingerprint is malformed")
    new = current["settings"]
    old = _saved_settings(saved, new)
    # A budget the checkpoint left out (its schedule was constant) is unknown, not the default: never name a
    # value the run did not use.
    unknown = {key for key in ("steps", "max_forward_passes") if key not in saved["settings"]}
    changed = [f"{key} {old.get(key)!r} -> {new.get(key)!r}" for key in sorted((set(old) | set(new)) - unknown)
               if old.get(key) != new.get(key)]
    if saved.get("data_sha256") != current["data_sha256"]:
        changed.append("the sampled data (a data file, --data-seed or a --num-* size changed)")
    if changed:
        raise ConfigError(f"Cannot resume the run in {folder.parent}: its checkpoint was made with other settings "
                          f"({'; '.join(changed)}); use the original settings, or start over with --overwrite")


def _saved_settings(fingerprint: dict[str, Any], keys) -> dict[str, Any]:
    """A checkpoint's recorded settings as this zotune names them: a setting newer than the checkpoint counts as
    its default; before 0.2.0 (no version recorded) `gaussian` named torch's generator (``legacy_noise``)."""
    settings = with_defaults(fingerprint["settings"], keys)
    return settings if "zotune_version" in fingerprint else legacy_noise(settings)


def check_names(config: TrainConfig) -> None:
    """Every name of the config exists and fits (task, objective, method, update rule, sampler, trackers):
    checked before the slow model load and before any folder is created.

    Raises:
        UnknownNameError: naming the closest matches.
        ConfigError: an objective the task cannot provide, an unknown tracker or one not installed.
    """
    check_objective(config.objective, config.parts.task)
    config.reporters()


def check_memory(config: TrainConfig) -> None:
    """Refuse, before anything is loaded or created, a run whose weights and optimizer buffers alone exceed the
    memory this machine has available (``train/plan.py``; activations come on top, so this is a floor).

    Raises:
        ConfigError: naming what the run needs, what is free, and the modes of the plan that would fit.
    """
    from zotune.errors import AssetError
    from zotune.train.plan import available_memory, least_bytes, plan_rows, read_shape

    free = available_memory()
    if free is None or config.offload:  # offloaded weights live on disk
        return
    try:
        shape = read_shape(config.model, trust_remote_code=config.trust_remote_code)
    except AssetError:
        return  # loading the model reports it, with its own message
    need = least_bytes(shape, dtype=config.dtype, update=config.update)
    if need > free:
        fitting = [row.mode for row in plan_rows(shape, batch=1, tokens=1) if row.needed <= free]
        hint = f"modes that fit: {', '.join(fitting)}" if fitting else "no mode fits this machine"
        raise ConfigError(f"{config.model} ({shape.params / 1e9:.2f} B parameters) needs at least {need / 1e9:.1f} GB "
                          f"as configured (--dtype {config.dtype}, --update {config.update}), and {free / 1e9:.1f} GB "
                          f"are available: {hint} (zotune plan --model {config.model} shows them all)")


def resolve_precision(config: TrainConfig) -> tuple[TrainConfig, str]:
    """The config with ``autocast: auto`` made concrete, and why: a run being resumed keeps the precision its
    checkpoint was made with (its fingerprint records it); a new one takes this machine's fastest
    (``precision.fastest_autocast``). Any other value is kept, as asked for."""
    if config.autocast != AUTO:
        return config, "as asked for"
    if config.resume:
        found = find_checkpoint(Path(config.output_dir) / "checkpoint")
        try:
            state = json.loads((found / LOOP).read_text(encoding="utf-8")) if found else None
            settings = state["fingerprint"]["settings"]
            # A checkpoint from before autocast existed ran float32 forward passes.
            return dataclasses.replace(config, autocast=settings.get("autocast")), "as the run being resumed"
        except (OSError, ValueError, KeyError, TypeError):
            pass  # no readable fingerprint: the resume's own checks report it
    autocast, reason = fastest_autocast(config.dtype)
    return dataclasses.replace(config, autocast=autocast), reason


def resolve_noise(config: TrainConfig) -> TrainConfig:
    """The config, resuming with the default noise a run that drew another stream (one made under an earlier
    default: torch-gaussian before 0.2.0, gaussian before 0.3.0), with the stream that run drew, so that the resume
    is exact; said in a warning."""
    if not config.resume or config.noise != ZOConfig.noise:
        return config
    found = find_checkpoint(Path(config.output_dir) / "checkpoint")
    try:
        fingerprint = json.loads((found / LOOP).read_text(encoding="utf-8"))["fingerprint"] if found else None
        drawn = _saved_settings(fingerprint, config.to_dict())["noise"]
    except (OSError, ValueError, KeyError, TypeError):
        return config  # no readable fingerprint: the resume's own checks report it
    if drawn == config.noise:
        return config
    if draws_own_directions(config.method):  # the name it recorded meant nothing: nothing to say
        return dataclasses.replace(config, noise=drawn)
    warnings.warn(f"The run in {config.output_dir} drew its directions from `{drawn}`, not from this zotune's "
                  f"default `{config.noise}`: it goes on with the stream it started with, {drawn}", ZotuneWarning,
                  stacklevel=3)
    return dataclasses.replace(config, noise=drawn)


def train(config: TrainConfig, *, progress: bool = True) -> TrainResult:
    """Fine-tune ``config.model`` on ``config.task`` with a ZO method.

    Evaluates before training (zero-shot) on dev and eval, on dev every ``eval_steps``, keeps the best-dev
    weights, and reports their accuracy on the eval set (with no dev set: the final weights, saved as ``best/``).
    Writes ``metrics.jsonl``, ``seeds.jsonl`` (the seed log that ``zotune replay`` rebuilds the weights from),
    ``loss.png``, ``summary.json``, ``checkpoint/`` (for ``--resume``) and ``best/`` (a loadable HF folder). Every
    file and folder is replaced atomically, so a run killed at any moment resumes from its last checkpoint.
    SIGINT/SIGTERM save a checkpoint at the end of the current step and raise ``Interrupted``.

    The output folder is locked for the run (one writer); a folder that holds another run is refused unless
    ``config.resume`` continues it (with the same settings and data, checked) or ``config.overwrite`` replaces
    its files; the model and data folders are never inside it.

    With ``config.parallel`` (under ``torchrun``), every process trains a replica (``zotune.optim.distributed``); the
    first one alone evaluates and writes files.

    Raises:
        ZotuneError: bad configuration, data or model; NonFiniteLossError after repeated non-finite losses.
        Interrupted: a SIGINT or SIGTERM stopped the run (a checkpoint was saved).
    """
    config, precision_reason = resolve_precision(config)
    if slow := emulated_bf16(config.autocast, config.dtype):
        warnings.warn(slow, ZotuneWarning, stacklevel=2)
        precision_reason = f"{precision_reason}; {slow}"
    config = resolve_noise(config)
    out = Path(config.output_dir)
    check_names(config)
    config.warn_ignored()
    check_memory(config)
    ranks = init_parallel(config.parallel, batch_size=config.batch_size)
    precision = {"autocast": config.autocast or "none", "weights": config.dtype, "why": precision_reason}
    if not ranks.is_main:
        return _train(config, ranks, progress=False, precision=precision)
    check_not_inputs({"--output-dir": [out / name for name in RUN_FILES]},
                     {"--model": config.model, "--data-dir": config.data_dir}, into=("--output-dir", out))
    check_writable(out)
    with FolderLock(out):
        return _train(config, ranks, progress=progress, precision=precision)


def _train(config: TrainConfig, ranks, *, progress: bool, precision: dict[str, str]) -> TrainResult:
    run = TrainingRun(config, ranks, progress=progress)  # checks the folder, loads model and data, opens the logs
    run.result.precision = precision
    with StopRequests() as stop:
        try:
            if not run.resumed:
                run.score_zero_shot()
            start = run.state["step"]
            bar = _progress_bar(run, start, disable=not progress)
            run.start_clock()
            for step in range(start, config.steps):
                loss = run.step(step)
                done = step + 1
                bar.update((run.optimizer.forward_passes if config.max_forward_passes else done) - bar.n)
                if math.isfinite(loss):
                    bar.set_postfix(step=done, loss=f"{loss:.4f}", refresh=False)
                stopping = run.stop_requested(stop)
                exhausted = run.budget_exhausted()  # a pass or time budget ends the run like its last step would
                if done % config.eval_steps == 0 or done == config.steps or exhausted:
                    run.end_interval(done)  # dev score, best weights, checkpoint
                elif stopping:
                    run.checkpoint(done)
                if stopping:  # SIGINT/SIGTERM: the checkpoint above holds this step
                    bar.close()
                    signum = stop.signum or signal.SIGTERM  # another rank got it
                    raise Interrupted(f"{signal.Signals(signum).name} at step {done}: checkpoint saved in "
                                      f"{run.out / 'checkpoint'}; continue with --resume", signum)
                if exhausted:
                    break
            bar.close()
            result = run.score_final()
        finally:
            run.close()
    return run.write_summary(result)


def _progress_bar(run: TrainingRun, start: int, *, disable: bool) -> tqdm:
    """The run's progress in what ends it: forward passes under a pass budget (a method's passes per step vary
    with it, and the step count is then only a cap), else steps."""
    config = run.config
    if config.max_forward_passes:
        return tqdm(initial=run.optimizer.forward_passes, total=config.max_forward_passes, disable=disable,
                    desc=f"{config.method} {config.task}", unit="pass", dynamic_ncols=True)
    return tqdm(initial=start, total=config.steps, disable=disable, desc=f"{config.method} {config.task}",
                unit="step", dynamic_ncols=True)


class TrainingRun:
    """One training run's objects (model, data, optimizer, logs, loop state) and the work the loop asks of them.

    Only the first process of a distributed run (``writes``) evaluates and writes files; replicas are identical.
    """

    def __init__(self, config: TrainConfig, ranks, *, progress: bool) -> None:
        self.config, self.ranks, self.progress = config, ranks, progress
        self.out = out = Path(config.output_dir)
        self.writes = ranks.is_main
        self.resumed = config.resume and find_checkpoint(out / "checkpoint") is not None
        previous = existing_outputs(out, RUN_FILES) if self.writes and not self.resumed else []
        if config.resume and not self.resumed:
            warnings.warn(f"No checkpoint in {out / 'checkpoint'}: starting from the beginning", ZotuneWarning,
                          stacklevel=4)
        if previous and not config.overwrite and config.resume:
            raise ConfigError(f"{out} holds a run's files ({', '.join(previous)}) but no checkpoint to resume from "
                              "(it was stopped before its first): start it over with --overwrite")
        if previous and not config.overwrite:
            raise ConfigError(f"{out} already holds a run ({', '.join(previous)}): continue it with --resume, "
                              "replace it with --overwrite, or choose another --output-dir")
        if config.threads:
            torch.set_num_threads(config.threads)
        self._load(config, ranks)
        self._open_logs(previous)

    def _load(self, config: TrainConfig, ranks) -> None:
        self.task = task = config.parts.task
        model, self.tokenizer = load_model(config.model, dtype=config.dtype,
                                           trust_remote_code=config.trust_remote_code,
                                           offload_to=self.out / "offload" if config.offload else None)
        max_length = fit_to_context(model, config.max_length)
        self.peft = config.parts.adapter
        if self.peft is not None:  # only the adapter is trainable from here on, so only it is perturbed and saved
            model = apply_peft(model, self.peft, seed=config.seed)
            # The saved adapter names its base as the hub id or an absolute folder, never the relative path typed
            # (which would not resolve from elsewhere), so AutoPeftModel loads it from anywhere.
            source = resolve_model_path(config.model)
            for adapter in model.peft_config.values():
                adapter.base_model_name_or_path = str(Path(source).resolve()) if isinstance(source, Path) else source
        self.model = model
        data = sample_splits(load_splits(task, config.data_dir), num_train=config.num_train,
                           num_dev=config.num_dev, num_eval=config.num_eval, seed=config.data_seed)
        self.train_ex, self.dev_ex, self.eval_ex = (encode(task, rows, self.tokenizer, max_length=max_length)
                                                    for rows in (data.train, data.dev, data.eval))
        self.data_sizes = {"train": len(self.train_ex), "dev": len(self.dev_ex), "eval": len(self.eval_ex)}
        if config.batch_size > len(self.train_ex):
            raise ConfigError(f"Invalid batch_size: {config.batch_size} (more than the {len(self.train_ex)} "
                              "training examples)")
        by_directions = ranks.mode == "directions"  # each rank probes its own n_directions directions
        self.optimizer = ZOOptimizer(model, config=dataclasses.replace(
            config.parts.optimizer, n_directions=config.n_directions * (ranks.world_size if by_directions else 1),
            direction_parallel=by_directions))
        # A local model folder is logged as an absolute path, so `zotune replay` finds it from any directory.
        self.base_name = str(Path(config.model).resolve()) if Path(config.model).exists() else config.model
        self.fingerprint = run_fingerprint(config, self.base_name, data)
        self.objective = objective_fn(config.objective, task, self.tokenizer, self.tokenizer.pad_token_id)
        self.schedule = config.parts.schedule

    def _open_logs(self, previous: list[str]) -> None:
        """Restore the checkpoint (resume) or clear the folder (overwrite), then open the seed log and metrics."""
        config, out, model, optimizer = self.config, self.out, self.model, self.optimizer
        self.result = TrainResult(data=dict(self.data_sizes), output_dir=str(out))
        self.state: dict[str, Any] = {"step": 0, "best_dev": -1.0, "best_dev_loss": float("inf"), "best_step": 0,
                                      "train_seconds": 0.0, "fingerprint": self.fingerprint}
        self.seed_log_path = seed_log_path = out / "seeds.jsonl"
        run_id = fingerprint_sha256(self.fingerprint)
        if self.resumed:
            self.state = load_checkpoint(out / "checkpoint", model, optimizer)
            _check_fingerprint(out / "checkpoint", self.state.get("fingerprint"), self.fingerprint)
            # Kept as saved (settings added since count as their defaults), so the seed log's header matches it.
            self.state["fingerprint"] = self.state.get("fingerprint") or self.fingerprint
            run_id = fingerprint_sha256(self.state["fingerprint"])
            self.result.zero_shot = self.state.get("zero_shot", {})
        self.seed_log = None
        if self.writes and self.resumed:
            # Every check before the first change to a file: a resume that is refused leaves the folder as it was.
            logged = read_seed_log(seed_log_path) if seed_log_path.exists() else None
            if logged is not None and logged.header.get("fingerprint", run_id) != run_id:
                raise StateError(f"{seed_log_path} belongs to another run than the checkpoint in "
                                 f"{out / 'checkpoint'} (their fingerprints differ); start over with --overwrite")
            if logged is not None and len(logged.steps) < self.state["step"]:
                raise StateError(f"{seed_log_path} holds {len(logged.steps)} steps, fewer than the checkpoint's "
                                 f"{self.state['step']}: it does not belong to this checkpoint")
            best, found = out / "best", previous_folder(out / "best")  # where score_final will load it from
            if config.save_best and self.dev_ex and not (found and any(
                    (found / name).is_file() for name in ("model.safetensors", "adapter_model.safetensors"))):
                # Found now, not after every step has run: the end of the run loads the best-dev weights.
                raise StateError(f"{best} is missing or incomplete: the resumed run could not report its best-dev "
                                 "weights. Put it back, resume with --no-save-best (the final weights are then "
                                 "scored), or start over with --overwrite")
            truncate_log(out / "metrics.jsonl", self.state["step"])  # reads it whole (or fails) before it writes
            if logged is not None:
                self.seed_log = SeedLogWriter(seed_log_path, optimizer, model, model_name=self.base_name,
                                              dtype=config.dtype, resume_at=self.state["step"])
            else:
                warnings.warn(f"No seed log in {out}: the resumed steps are not logged for replay", ZotuneWarning,
                              stacklevel=4)
        elif self.writes:
            remove_outputs(out, previous)  # --overwrite: only now that the model, data and settings have loaded
            extra: dict[str, Any] = {"fingerprint": run_id}
            if self.peft is not None:
                extra.update(peft=self.peft.to_dict(), peft_seed=config.seed)
            self.seed_log = SeedLogWriter(seed_log_path, optimizer, model, model_name=self.base_name,
                                          dtype=config.dtype, extra=extra)
        logger: MetricLogger = JsonlLogger(out / "metrics.jsonl", append=self.resumed) if self.writes else NullLogger()
        trackers = config.reporters() if self.writes else []
        if trackers:
            logger = FanOut([logger, *tracker_loggers(trackers, out, config.to_dict(),
                                                      name=f"{config.method}-{config.task}-seed{config.seed}",
                                                      resume_at=self.state["step"] if self.resumed else None)])
        self.logger = logger

    # --- what the loop does ----------------------------------------------------------------------------------

    def batch_closure(self, indices: list[int]):
        batch = [self.train_ex[i] for i in self.ranks.shard(indices)]  # data parallelism: this rank's part

        def loss() -> torch.Tensor:
            with forward_precision(self.model, self.config.autocast):
                return self.objective(self.model, batch)

        return mean_over_ranks(loss, self.ranks)

    def step(self, step: int) -> float:
        """One optimizer step at the schedule's rate, logged; returns its loss."""
        config, optimizer = self.config, self.optimizer
        for group in optimizer.param_groups:
            group["lr"] = self.schedule(step, budget_progress(step, config.steps, optimizer.forward_passes,
                                                              config.max_forward_passes))
        closure = self.batch_closure(batch_indices(step, len(self.train_ex), config.batch_size, config.seed))
        loss = optimizer.step(closure, fresh_closure=lambda j: self.batch_closure(
            fresh_batch_indices(step, j, len(self.train_ex), config.batch_size, config.seed)))
        if optimizer.consecutive_skips >= config.max_nonfinite:
            raise NonFiniteLossError(
                f"{optimizer.consecutive_skips} steps skipped in a row at step {step} (non-finite losses, or "
                "updates beyond the float range); stopping. "
                f"The last good checkpoint is in {self.out / 'checkpoint'} (try a smaller --lr or --eps)")
        if self.seed_log:
            self.seed_log.append(optimizer.last_record)
        phases = self.state.setdefault("step_seconds", {})
        for phase, seconds in optimizer.last_step_seconds.items():
            phases[phase] = phases.get(phase, 0.0) + seconds
        done = step + 1
        for event in optimizer.method.report():  # e.g. DiZO's projection rounds
            self.logger.log({"kind": "method", "step": done, **event})
        if done % config.log_steps == 0:
            self.logger.log({"kind": "train", "step": done, "loss": loss, "lr": optimizer.param_groups[0]["lr"],
                             "projected_grad": optimizer.last_probes[0].projected_grad,
                             "forward_passes": optimizer.forward_passes, "seconds": self.train_seconds(),
                             "load": load_average(),
                             **{f"seconds_{k}": v for k, v in optimizer.last_step_seconds.items()},
                             **optimizer.sampler.metrics(), **optimizer.method.metrics()})
        return loss

    _clock: float | None = None  # when training time last started counting (None: stopped)

    def start_clock(self) -> None:
        self._clock = time.perf_counter()

    def train_seconds(self) -> float:
        """Training time so far: the seconds counted in the loop state plus those since the clock started."""
        running = 0.0 if self._clock is None else time.perf_counter() - self._clock
        return self.state["train_seconds"] + running

    def _stop_clock(self) -> None:
        """Training time excludes evaluations and saves: count the seconds so far, and stop counting."""
        self.state["train_seconds"] = self.train_seconds()
        self._clock = None

    def budget_exhausted(self) -> bool:
        config = self.config
        return bool((config.max_forward_passes and self.optimizer.forward_passes >= config.max_forward_passes)
                    or (config.max_seconds and self.train_seconds() >= config.max_seconds))

    def stop_requested(self, stop: StopRequests) -> bool:
        if self.ranks.mode is None:
            return stop.signum is not None
        # Every rank must stop after the same step, or the others would wait for it forever.
        return bool(sum_over_ranks(torch.tensor([float(stop.signum is not None)], dtype=torch.float64)).item())

    def score(self, examples, name: str) -> dict[str, float]:
        if not examples or not self.writes:  # replicas are identical: the first process evaluates for all
            return {}
        with forward_precision(self.model, self.config.autocast):
            return evaluate(self.model, examples, self.tokenizer.pad_token_id, batch_size=self.config.eval_batch_size,
                            desc=f"eval {name}" if self.progress else None, tokenizer=self.tokenizer)

    def save_best(self) -> None:
        self.save_model("best")

    def save_model(self, name: str) -> None:
        """The model (or its adapter) and tokenizer as a loadable folder ``name`` in the run's folder."""
        if self.writes:
            replace_folder(self.out / name, lambda tmp: (self.model.save_pretrained(tmp),
                                                         self.tokenizer.save_pretrained(tmp)))

    def _check_finite_weights(self, done: int, what: str) -> None:
        """A diverged model is never saved as good: the last checkpoint (and best/) stay as they were."""
        bad = [n for n, p in self.model.named_parameters() if p.requires_grad and not bool(torch.isfinite(p).all())]
        if bad:
            raise NonFiniteLossError(
                f"The weights became non-finite by step {done} ({', '.join(bad[:3])}{' ...' if len(bad) > 3 else ''}): "
                f"not saved as {what}; the last checkpoint in {self.out / 'checkpoint'} is kept (try a smaller --lr)")

    def checkpoint(self, done: int) -> None:
        """Save the run as of step ``done`` (its seed log first: it must hold every step the checkpoint does)."""
        self._check_finite_weights(done, "a checkpoint")
        self._stop_clock()
        self.state["step"] = done
        if self.writes:
            if self.seed_log:
                self.seed_log.sync()
            save_checkpoint(self.out / "checkpoint", self.model, self.optimizer, self.state)
        self.start_clock()

    def score_zero_shot(self) -> None:
        zero_shot = {"dev_" + k: v for k, v in self.score(self.dev_ex, "dev zero-shot").items()}
        zero_shot.update({"eval_" + k: v for k, v in self.score(self.eval_ex, "held-out zero-shot").items()})
        self.logger.log({"kind": "zero_shot", "step": 0, **zero_shot})
        self.result.zero_shot = self.state["zero_shot"] = zero_shot
        self.state["best_dev"] = zero_shot.get("dev_score", -1.0)
        self.state["best_dev_loss"] = zero_shot.get("dev_loss", float("inf"))
        if self.config.save_best and self.dev_ex:
            self.save_best()

    def end_interval(self, done: int) -> None:
        """Score dev, keep the best weights (ties, common on small dev sets, go to the lower dev loss), report
        the sampler's interval, and checkpoint."""
        self._stop_clock()
        dev = self.score(self.dev_ex, "dev")
        if dev:
            # the training seconds and passes so far, so a dev curve can be drawn against cost (zotune bench)
            self.logger.log({"kind": "dev", "step": done, "forward_passes": self.optimizer.forward_passes,
                             "seconds": self.state["train_seconds"], **dev})
        for record in self.optimizer.sampler.report():  # e.g. AdaLeZO's layer draws over the interval
            self.logger.log({"kind": "sampler", "step": done, **record})
        if dev and not math.isfinite(dev["loss"]):
            # NaN or inf outputs: every later probe is non-finite and skipped, so the run cannot recover.
            raise NonFiniteLossError(
                f"The model's outputs became non-finite by step {done} (dev loss {dev['loss']}): it has diverged; "
                f"the last checkpoint in {self.out / 'checkpoint'} and best/ are kept (try a smaller --lr or --eps)")
        if dev and (dev["score"], -dev["loss"]) > (self.state["best_dev"], -self.state["best_dev_loss"]):
            self.state.update(best_dev=dev["score"], best_dev_loss=dev["loss"], best_step=done)
            if self.config.save_best:
                self.save_best()
        self.checkpoint(done)

    def score_final(self) -> TrainResult:
        """The held-out score of the best-dev weights (MeZO's protocol), or of the final ones with no dev set."""
        config, result, state = self.config, self.result, self.state
        if self.seed_log:
            self.seed_log.finish(state["step"])
        result.steps, result.forward_passes = state["step"], self.optimizer.forward_passes
        result.train_seconds, result.step_seconds = state["train_seconds"], state.get("step_seconds", {})
        result.machine = machine_info()
        # The weights here are the last checkpoint's, whose save checked them finite: final/ and best/ need no check.
        if self.writes:  # the last step's weights as a loadable folder, whichever weights best/ holds
            self.save_model("final")
        if not self.dev_ex:  # nothing to select with: the final weights are the ones scored and saved
            state.update(best_dev=float("nan"), best_step=result.steps)
            if config.save_best:
                self.save_best()
        result.best_dev_score, result.best_step = state["best_dev"], state["best_step"]
        if config.save_best and self.writes and self.dev_ex:
            load_best(self.model, previous_folder(self.out / "best") or self.out / "best")  # .old: a crash's
        chosen = "best-dev" if config.save_best and self.dev_ex else "final"
        result.final = {"eval_" + k: v for k, v in self.score(self.eval_ex, f"held-out {chosen}").items()}
        self.logger.log({"kind": "final", "step": result.steps, "best_step": result.best_step, **result.final})
        if self.writes:
            for weights in ("best", "final") if config.save_best else ("final",):
                if (self.out / weights).is_dir():
                    atomic_write_text(self.out / weights / "README.md",
                                      model_card(config, result, self.task, weights=weights))
        return result

    def close(self) -> None:
        """End what the run holds: the optimizer's noise threads, the logs, and the offloaded weight files (the
        checkpoint and the model folders hold the weights; a resumed run maps the base model anew)."""
        self.optimizer.close()  # its noise threads end with the training, not with the process
        self.logger.close()
        if self.seed_log:
            self.seed_log.close()
        if self.config.offload and self.writes:
            shutil.rmtree(self.out / "offload", ignore_errors=True)

    def write_summary(self, result: TrainResult) -> TrainResult:
        """Plots and summary.json (first process only), then the distributed group is closed."""
        config, out = self.config, self.out
        if not self.writes:
            close_parallel(self.ranks)  # the first process is still evaluating and writing: wait for it
            return result
        records = read_jsonl(out / "metrics.jsonl")
        atomic_write(out / "loss.png", lambda tmp: plot_training(
            records, tmp, title=f"{config.method} on {config.task} ({config.model})"))
        result.files = {"metrics": str(out / "metrics.jsonl"), "plot": str(out / "loss.png"),
                        "checkpoint": str(out / "checkpoint"), "seed_log": str(self.seed_log_path)}
        for weights in ("best", "final"):  # best/: not with --no-save-best
            if (out / weights).is_dir():
                result.files[weights] = str(out / weights)
        if any(r.get("kind") == "sampler" and "draws" in r for r in records):
            atomic_write(out / "layers.png", lambda tmp: plot_layer_draws(
                records, tmp, title=f"{self.optimizer.sampler.config.name} layer draws"))
            result.files["layers"] = str(out / "layers.png")
        # The noise the run drew: a run resumed from a checkpoint made before `gaussian` was the counter-based
        # stream went on with torch-gaussian (ZOOptimizer._continue_noise). The version dates the names.
        from zotune import __version__

        settings = {**config.to_dict(), "noise": self.optimizer.config.noise}
        summary = {"zotune_version": __version__, "config": settings, **result.__dict__}
        if not math.isfinite(summary["best_dev_score"]):
            summary["best_dev_score"] = None  # no dev set: JSON has no NaN, and no number is the honest value
        atomic_write_text(out / "summary.json", json.dumps(summary, indent=1))
        close_parallel(self.ranks)
        return result
