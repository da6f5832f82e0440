"""The training loop: one explicit function from a ``TrainConfig`` to a trained model and its metrics."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import signal
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from zotune.assets import fit_to_context, load_model
from zotune.errors import ConfigError, Interrupted, NonFiniteLossError, StateError, ZotuneWarning
from zotune.files.durable import atomic_write, atomic_write_text, check_writable, replace_folder
from zotune.files.outputs import FolderLock, check_not_inputs, existing_outputs, remove_outputs
from zotune.integrations.adapters import apply_peft
from zotune.methods import METHODS, SAMPLERS
from zotune.optim import ZOOptimizer
from zotune.optim.distributed import close_parallel, init_parallel, mean_over_ranks, sum_over_ranks
from zotune.perturb import mix_seed
from zotune.tasks import (
    encode,
    evaluate,
    load_splits,
    sample_mezo,
)
from zotune.tasks.data import TaskData
from zotune.tasks.objectives import check_objective, objective_fn
from zotune.train.card import model_card
from zotune.train.checkpoint import (
    find_checkpoint,
    load_best,
    load_checkpoint,
    save_checkpoint,
)
from zotune.train.config import TrainConfig
from zotune.train.logging import FanOut, JsonlLogger, NullLogger, read_jsonl, tracker_loggers
from zotune.train.plots import plot_layer_draws, plot_training
from zotune.train.schedule import budget_progress
from zotune.train.seedlog import SeedLogWriter, read_seed_log
from zotune.train.signals import StopRequests

__all__ = ["train", "check_names", "TrainResult", "batch_indices", "fresh_batch_indices", "truncate_log", "run_fingerprint",
           "RUN_FILES"]

log = logging.getLogger(__name__)

_FRESH_STREAM = 0xF4E5  # seeds the fresh-batch stream, apart from the training batches' epochs


@dataclass
class TrainResult:
    zero_shot: dict[str, float] = field(default_factory=dict)
    final: dict[str, float] = field(default_factory=dict)
    best_dev_accuracy: float = float("nan")
    best_step: int = 0
    steps: int = 0
    forward_passes: int = 0
    train_seconds: float = 0.0
    # Seconds per phase of the optimizer steps (forward, perturb, update, other), summed over the run's steps.
    step_seconds: dict[str, float] = field(default_factory=dict)
    output_dir: str = ""
    files: dict[str, str] = field(default_factory=dict)


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
             "checkpoint.old", "checkpoint.partial", "best", "best.old", "best.partial", "tensorboard", "wandb")
# Settings a resumed run may change: none of them changes the weights a step produces.
RESUMABLE = frozenset({"steps", "max_forward_passes", "max_seconds", "eval_steps", "log_steps", "eval_batch_size",
                       "output_dir", "resume", "overwrite", "save_best", "threads", "data_dir", "trust_remote_code",
                       "report_to"})


def run_fingerprint(config: TrainConfig, model_name: str, data: TaskData) -> dict[str, Any]:
    """What a checkpoint must have been made with to be resumed: every setting outside ``RESUMABLE`` and a
    SHA-256 of the sampled rows (train, dev, eval), so an edited label or another data seed is caught."""
    # A decaying schedule spreads over the budget, so then the budget shapes every step's learning rate too.
    resumable = RESUMABLE if config.lr_schedule().is_constant else RESUMABLE - {"steps", "max_forward_passes"}
    settings = {k: v for k, v in config.to_dict().items() if k not in resumable}
    settings["model"] = model_name
    rows = json.dumps([data.train, data.dev, data.eval], sort_keys=True, ensure_ascii=False, default=str)
    return {"settings": settings, "data_sha256": hashlib.sha256(rows.encode("utf-8")).hexdigest()}


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
    # A setting added to zotune after the checkpoint was made counts as its default (defaults keep the behaviour
    # of the versions before it), so an upgrade alone does not block a resume.
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig) if f.default is not dataclasses.MISSING}
    old = {**{key: defaults[key] for key in current["settings"].keys() - saved["settings"].keys() if key in defaults},
           **saved["settings"]}
    new = current["settings"]
    changed = [f"{key} {old.get(key)!r} -> {new.get(key)!r}" for key in sorted(set(old) | set(new))
               if old.get(key) != new.get(key)]
    if saved.get("data_sha256") != current["data_sha256"]:
        changed.append("the sampled data (a data file, --data-seed or a --num-* size changed)")
    if changed:
        raise ConfigError(f"Cannot resume the run in {folder.parent}: its checkpoint was made with other settings "
                          f"({'; '.join(changed)}); use the original settings, or start over with --overwrite")


def check_names(config: TrainConfig) -> None:
    """Every name of the config exists and fits (task, objective, method, update rule, sampler, trackers):
    checked before the slow model load and before any folder is created.

    Raises:
        UnknownNameError: naming the closest matches.
        ConfigError: an objective the task cannot provide, an unknown tracker or one not installed.
    """
    check_objective(config.objective, config.build_task())
    METHODS.get(config.method), config.reporters()
    if config.sampler is not None:
        SAMPLERS.get(config.sampler)


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
    out = Path(config.output_dir)
    check_names(config)
    ranks = init_parallel(config.parallel, batch_size=config.batch_size)
    if not ranks.is_main:
        return _train(config, ranks, progress=False)
    check_not_inputs({"--output-dir": [out / name for name in RUN_FILES]},
                     {"--model": config.model, "--data-dir": config.data_dir}, into=("--output-dir", out))
    check_writable(out)
    with FolderLock(out):
        return _train(config, ranks, progress=progress)


def _train(config: TrainConfig, ranks, *, progress: bool) -> TrainResult:
    out = Path(config.output_dir)
    writes = ranks.is_main
    found = find_checkpoint(out / "checkpoint")
    resume = config.resume and found is not None
    previous = existing_outputs(out, RUN_FILES) if writes and not resume else []
    if config.resume and found is None:
        warnings.warn(f"No checkpoint in {out / 'checkpoint'}: starting from the beginning", ZotuneWarning,
                      stacklevel=3)
    if previous and not config.overwrite and config.resume:
        raise ConfigError(f"{out} holds a run's files ({', '.join(previous)}) but no checkpoint to resume from (it "
                          "was stopped before its first): start it over with --overwrite")
    if previous and not config.overwrite:
        raise ConfigError(f"{out} already holds a run ({', '.join(previous)}): continue it with --resume, replace "
                          "it with --overwrite, or choose another --output-dir")
    if config.threads:
        torch.set_num_threads(config.threads)
    task = config.build_task()
    model, tokenizer = load_model(config.model, dtype=config.dtype, trust_remote_code=config.trust_remote_code)
    max_length = fit_to_context(model, config.max_length)
    peft = config.peft_settings()
    if peft is not None:  # only the adapter is trainable from here on, so only it is perturbed and saved
        model = apply_peft(model, peft, seed=config.seed)
    data = sample_mezo(load_splits(task, config.data_dir), num_train=config.num_train,
                       num_dev=config.num_dev, num_eval=config.num_eval, seed=config.data_seed)
    train_ex, dev_ex, eval_ex = (encode(task, rows, tokenizer, max_length=max_length)
                                 for rows in (data.train, data.dev, data.eval))
    if config.batch_size > len(train_ex):
        raise ConfigError(f"Invalid batch_size: {config.batch_size} (more than the {len(train_ex)} training examples)")
    pad_id = tokenizer.pad_token_id
    by_directions = ranks.mode == "directions"  # each rank probes its own n_directions directions
    optimizer = ZOOptimizer(model, config=config.zo_config(
        n_directions=config.n_directions * (ranks.world_size if by_directions else 1),
        direction_parallel=by_directions))
    # A local model folder is logged as an absolute path, so `zotune replay` finds it from any directory.
    base_name = str(Path(config.model).resolve()) if Path(config.model).exists() else config.model
    fingerprint = run_fingerprint(config, base_name, data)

    def save_best() -> None:
        if writes:
            replace_folder(out / "best", lambda tmp: (model.save_pretrained(tmp), tokenizer.save_pretrained(tmp)))

    objective = objective_fn(config.objective, task, tokenizer, pad_id)
    schedule = config.lr_schedule()

    def batch_closure(indices: list[int]):
        batch = [train_ex[i] for i in ranks.shard(indices)]  # data parallelism: this rank's part
        return mean_over_ranks(lambda: objective(model, batch), ranks)

    def score(examples, name: str) -> dict[str, float]:
        if not examples or not writes:  # replicas are identical: the first process evaluates for all
            return {}
        return evaluate(model, examples, pad_id, batch_size=config.eval_batch_size,
                        desc=f"eval {name}" if progress else None, tokenizer=tokenizer)

    result = TrainResult(output_dir=str(out))
    loop_state: dict[str, Any] = {"step": 0, "best_dev": -1.0, "best_dev_loss": float("inf"), "best_step": 0,
                                  "train_seconds": 0.0, "fingerprint": fingerprint}
    seed_log_path = out / "seeds.jsonl"
    run_id = fingerprint_sha256(fingerprint)
    if resume:
        loop_state = load_checkpoint(out / "checkpoint", model, optimizer)
        _check_fingerprint(out / "checkpoint", loop_state.get("fingerprint"), fingerprint)
        # Kept as saved (settings added since count as their defaults), so the seed log's header still matches it.
        loop_state["fingerprint"] = loop_state.get("fingerprint") or fingerprint
        run_id = fingerprint_sha256(loop_state["fingerprint"])
        result.zero_shot = loop_state.get("zero_shot", {})
    seed_log = None
    if writes and resume:
        # Every check before the first change to a file: a resume that is refused leaves the folder as it was.
        logged = read_seed_log(seed_log_path) if seed_log_path.exists() else None
        if logged is not None and logged.header.get("fingerprint", run_id) != run_id:
            raise StateError(f"{seed_log_path} belongs to another run than the checkpoint in {out / 'checkpoint'} "
                             "(their fingerprints differ); start over with --overwrite")
        if logged is not None and len(logged.steps) < loop_state["step"]:
            raise StateError(f"{seed_log_path} holds {len(logged.steps)} steps, fewer than the checkpoint's "
                             f"{loop_state['step']}: it does not belong to this checkpoint")
        truncate_log(out / "metrics.jsonl", loop_state["step"])  # reads it whole (or fails) before it writes
        if logged is not None:
            seed_log = SeedLogWriter(seed_log_path, optimizer, model, model_name=base_name, dtype=config.dtype,
                                     resume_at=loop_state["step"])
        else:
            warnings.warn(f"No seed log in {out}: the resumed steps are not logged for replay", ZotuneWarning,
                          stacklevel=2)
    elif writes:
        remove_outputs(out, previous)  # --overwrite: only now that the model, data and settings have loaded
        extra: dict[str, Any] = {"fingerprint": run_id}
        if peft is not None:
            extra.update(peft=peft.to_dict(), peft_seed=config.seed)
        seed_log = SeedLogWriter(seed_log_path, optimizer, model, model_name=base_name, dtype=config.dtype,
                                 extra=extra)
    logger = JsonlLogger(out / "metrics.jsonl", append=resume) if writes else NullLogger()
    trackers = config.reporters() if writes else []
    if trackers:
        logger = FanOut([logger, *tracker_loggers(trackers, out, config.to_dict(),
                                                  name=f"{config.method}-{config.task}-seed{config.seed}")])

    def checkpoint(done: int) -> None:
        loop_state["step"] = done
        if not writes:
            return
        if seed_log:
            seed_log.sync()  # the log must hold every step the checkpoint contains
        save_checkpoint(out / "checkpoint", model, optimizer, loop_state)

    def stop_requested() -> bool:
        if ranks.mode is None:
            return stop.signum is not None
        # Every rank must stop after the same step, or the others would wait for it forever.
        return bool(sum_over_ranks(torch.tensor([float(stop.signum is not None)], dtype=torch.float64)).item())
    with StopRequests() as stop:
        try:
            if not resume:
                result.zero_shot = {"dev_" + k: v for k, v in score(dev_ex, "dev zero-shot").items()}
                result.zero_shot.update({"eval_" + k: v for k, v in score(eval_ex, "held-out zero-shot").items()})
                logger.log({"kind": "zero_shot", "step": 0, **result.zero_shot})
                loop_state["zero_shot"] = result.zero_shot
                loop_state["best_dev"] = result.zero_shot.get("dev_score", -1.0)
                loop_state["best_dev_loss"] = result.zero_shot.get("dev_loss", float("inf"))
                if config.save_best and dev_ex:
                    save_best()
            start = loop_state["step"]
            bar = tqdm(range(start, config.steps), initial=start, total=config.steps, disable=not progress,
                       desc=f"{config.method} {config.task}", unit="step", dynamic_ncols=True)
            clock = time.perf_counter()
            for step in bar:
                for group in optimizer.param_groups:
                    group["lr"] = schedule(step, budget_progress(step, config.steps, optimizer.forward_passes,
                                                                 config.max_forward_passes))
                closure = batch_closure(batch_indices(step, len(train_ex), config.batch_size, config.seed))
                loss = optimizer.step(closure, fresh_closure=lambda j, step=step: batch_closure(
                    fresh_batch_indices(step, j, len(train_ex), config.batch_size, config.seed)))
                if optimizer.consecutive_skips >= config.max_nonfinite:
                    raise NonFiniteLossError(
                        f"{optimizer.consecutive_skips} non-finite losses in a row at step {step}; stopping. "
                        f"The last good checkpoint is in {out / 'checkpoint'} (try a smaller --lr or --eps)")
                if seed_log:
                    seed_log.append(optimizer.last_record)
                phases = loop_state.setdefault("step_seconds", {})
                for phase, seconds in optimizer.last_step_seconds.items():
                    phases[phase] = phases.get(phase, 0.0) + seconds
                done = step + 1
                for event in optimizer.method.report():  # e.g. DiZO's projection rounds
                    logger.log({"kind": "method", "step": done, **event})
                if done % config.log_steps == 0:
                    logger.log({"kind": "train", "step": done, "loss": loss, "lr": optimizer.param_groups[0]["lr"],
                                "projected_grad": optimizer.last_probes[0].projected_grad,
                                "forward_passes": optimizer.forward_passes,
                                "seconds": loop_state["train_seconds"] + time.perf_counter() - clock,
                                **{f"seconds_{k}": v for k, v in optimizer.last_step_seconds.items()},
                                **optimizer.sampler.metrics(), **optimizer.method.metrics()})
                if math.isfinite(loss):
                    bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
                stopping = stop_requested()
                # A budget in forward passes or seconds ends the run like its last step would.
                exhausted = bool(
                    (config.max_forward_passes and optimizer.forward_passes >= config.max_forward_passes)
                    or (config.max_seconds
                        and loop_state["train_seconds"] + time.perf_counter() - clock >= config.max_seconds))
                if done % config.eval_steps == 0 or done == config.steps or exhausted:
                    loop_state["train_seconds"] += time.perf_counter() - clock  # training time excludes evals
                    dev = score(dev_ex, "dev")
                    if dev:
                        logger.log({"kind": "dev", "step": done, **dev})
                    for record in optimizer.sampler.report():  # e.g. AdaLeZO's layer draws over the interval
                        logger.log({"kind": "sampler", "step": done, **record})
                    # Best by the dev metric; ties (common on small dev sets) go to the lower dev loss.
                    if dev and (dev["score"], -dev["loss"]) > (loop_state["best_dev"], -loop_state["best_dev_loss"]):
                        loop_state.update(best_dev=dev["score"], best_dev_loss=dev["loss"], best_step=done)
                        if config.save_best:
                            save_best()
                    checkpoint(done)
                    clock = time.perf_counter()
                elif stopping:
                    loop_state["train_seconds"] += time.perf_counter() - clock
                    checkpoint(done)
                if exhausted and not stopping:
                    break
                if stopping:  # SIGINT/SIGTERM: the checkpoint above holds this step
                    bar.close()
                    signum = stop.signum or signal.SIGTERM  # another rank got it
                    raise Interrupted(f"{signal.Signals(signum).name} at step {done}: checkpoint saved in "
                                      f"{out / 'checkpoint'}; continue with --resume", signum)
            bar.close()
            if seed_log:
                seed_log.finish(loop_state["step"])
            result.steps = loop_state["step"]
            result.forward_passes = optimizer.forward_passes
            result.train_seconds = loop_state["train_seconds"]
            result.step_seconds = loop_state.get("step_seconds", {})
            if not dev_ex:  # nothing to select with: the final weights are the ones scored and saved
                loop_state.update(best_dev=float("nan"), best_step=result.steps)
                if config.save_best:
                    save_best()
            result.best_dev_accuracy = loop_state["best_dev"]
            result.best_step = loop_state["best_step"]
            # Report the best-dev weights on the held-out set (MeZO's protocol).
            if config.save_best and writes and dev_ex:
                load_best(model, out / "best")
            chosen = "best-dev" if config.save_best and dev_ex else "final"
            result.final = {"eval_" + k: v for k, v in score(eval_ex, f"held-out {chosen}").items()}
            logger.log({"kind": "final", "step": result.steps, "best_step": result.best_step, **result.final})
            if writes and config.save_best and (out / "best").is_dir():
                atomic_write_text(out / "best" / "README.md", model_card(config, result, task.metric))
        finally:
            logger.close()
            if seed_log:
                seed_log.close()
    if not writes:
        close_parallel(ranks)  # the first process is still evaluating and writing: wait for it
        return result
    records = read_jsonl(out / "metrics.jsonl")
    atomic_write(out / "loss.png", lambda tmp: plot_training(
        records, tmp, title=f"{config.method} on {config.task} ({config.model})"))
    result.files = {"metrics": str(out / "metrics.jsonl"), "plot": str(out / "loss.png"),
                    "checkpoint": str(out / "checkpoint"), "best": str(out / "best"), "seed_log": str(seed_log_path)}
    if any(r.get("kind") == "sampler" and "draws" in r for r in records):
        atomic_write(out / "layers.png", lambda tmp: plot_layer_draws(
            records, tmp, title=f"{optimizer.sampler.config.name} layer draws"))
        result.files["layers"] = str(out / "layers.png")
    summary = {"config": config.to_dict(), **result.__dict__}
    if not math.isfinite(summary["best_dev_accuracy"]):
        summary["best_dev_accuracy"] = None  # no dev set: JSON has no NaN, and no number is the honest value
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=1))
    close_parallel(ranks)
    return result
