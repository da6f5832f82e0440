"""The seed log: a run's updates as seeds and scalars, enough to rebuild its weights from the base model.

A JSON-lines file. The first line is a header (the optimizer's settings, the model, and a SHA-256 of the base
weights); then one line per step with the step seed, the learning rate, every loss value the step consumed, the
projected gradients, and the sampler's choice of blocks with their update weights when it chose a subset (as
runs ``[first, stop, weight]`` of consecutive blocks); and, when the run ends, a line
with the SHA-256 of the final weights. Floats are written with ``repr`` precision, so they read back exactly.

Every method replays from it, because a ZO step's arithmetic is a pure function of the settings, the step seed
and the loss values: AdaLeZO's draws, DiZO's projection ratios and LDSD's policy are recomputed from the logged
losses (see ``zotune.train.replay``). Lines are flushed as they are written and fsynced at checkpoints; a line torn by
a crash is the last one and is ignored when read.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from zotune.errors import StateError, ZotuneWarning
from zotune.files.durable import atomic_write_text
from zotune.optim import StepRecord, ZOConfig, ZOOptimizer, legacy_noise
from zotune.settings import is_finite, is_int, is_real, renamed_settings

__all__ = ["SeedLog", "SeedLogWriter", "read_seed_log", "weights_sha256", "model_sha256", "FORMAT"]

FORMAT = "zotune-seed-log"
# Version 2: `gaussian` is the counter-based stream (perturb/normal.py); in version 1 it was torch's generator,
# now `torch-gaussian`, and a version 1 log is read with that name (``zotune.optim.legacy_noise``).
VERSION = 2


def weights_sha256(named: Iterable[tuple[str, torch.Tensor]]) -> str:
    """SHA-256 over the names, dtypes, shapes and bytes of tensors, in order: equal iff bitwise equal."""
    digest = hashlib.sha256()
    for name, tensor in named:
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def model_sha256(model: torch.nn.Module) -> str:
    """The hash of every parameter, frozen ones included (a LoRA run's base weights matter to its replay)."""
    return weights_sha256(model.named_parameters())


def _plan_runs(blocks: tuple[int, ...], weights: tuple[float, ...]) -> list[list]:
    """Consecutive blocks with one weight as ``[first, stop, weight]``: a sampled layer's tensors are adjacent,
    so an AdaLeZO step (6 layers of 9 tensors on SmolLM2-135M) takes 6 runs instead of 54 pairs."""
    runs: list[list] = []
    for block, weight in zip(blocks, weights):
        if runs and runs[-1][1] == block and runs[-1][2] == weight:
            runs[-1][1] += 1
        else:
            runs.append([block, block + 1, weight])
    return runs


def _plan_from_runs(runs: Any, num_blocks: int) -> tuple[tuple[int, ...], tuple[float, ...]]:
    """Expand ``[first, stop, weight]`` runs, checked to lie within the model's ``num_blocks`` blocks and to
    name no more blocks than it has (so a line cannot ask for more memory than the model describes)."""
    if not isinstance(runs, list):
        raise ValueError("plan: not a list")
    pairs: list[tuple[int, float]] = []
    for run in runs:
        if not (isinstance(run, list) and len(run) == 3 and all(is_int(v) for v in run[:2])
                and is_finite(run[2])):
            raise ValueError(f"plan entry {run!r}: not [first, stop, weight]")
        first, stop, weight = run
        if not 0 <= first < stop <= num_blocks or len(pairs) + stop - first > num_blocks:
            raise ValueError(f"plan entry {run!r}: more blocks than the model's {num_blocks}")
        pairs += [(block, float(weight)) for block in range(first, stop)]
    return tuple(b for b, _ in pairs), tuple(w for _, w in pairs)


def _checksum(line: dict[str, Any]) -> str:
    """A short SHA-256 of a line's content: an edit to a logged value is found, and named, when read."""
    return hashlib.sha256(json.dumps(line).encode("utf-8")).hexdigest()[:16]


def _dump(line: dict[str, Any]) -> str:
    return json.dumps({**line, "check": _checksum(line)}) + "\n"


def _step_line(record: StepRecord) -> dict[str, Any]:
    line: dict[str, Any] = {"step": record.step, "seed": record.seed, "lr": record.lr, "losses": record.losses,
                            "grads": record.grads}
    if record.plan is not None:
        line["plan"] = _plan_runs(*record.plan)
    if record.skipped:
        line["skipped"] = True
    return line


class SeedLogWriter:
    """Appends a run's steps to a seed log.

    Args:
        path: the log file.
        optimizer: the run's optimizer (its settings go in the header).
        model: the model being trained (hashed for the header and at the end).
        model_name: how to load the base model again (a built-in name, folder or hub id).
        dtype: the dtype the model was loaded in.
        resume_at: continue an existing log: keep its header and its steps before this index, drop the rest
            (written after the checkpoint the run resumes from). None starts a new log.
        extra: more header fields, e.g. the adapter a replay must add to the base model first.
    """

    def __init__(self, path: str | Path, optimizer: ZOOptimizer, model: torch.nn.Module, *, model_name: str,
                 dtype: str, resume_at: int | None = None, extra: dict[str, Any] | None = None) -> None:
        self.path = Path(path)
        self.model = model
        if resume_at is None:
            header = {"format": FORMAT, "version": VERSION, "model": model_name, "dtype": dtype,
                      "optimizer": optimizer.settings, "base_sha256": model_sha256(model),
                      "blocks": len(optimizer.engine), **(extra or {})}
            atomic_write_text(self.path, _dump(header))
        else:
            log = read_seed_log(self.path)
            kept = [log.header] + [_step_line(r) for r in log.steps if r.step < resume_at]
            atomic_write_text(self.path, "".join(_dump(line) for line in kept))
        self._fh = open(self.path, "a", encoding="utf-8")

    def append(self, record: StepRecord) -> None:
        self._fh.write(_dump(_step_line(record)))
        self._fh.flush()

    def sync(self) -> None:
        """Make the lines written so far durable (called at each checkpoint)."""
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def finish(self, steps: int) -> None:
        """Write the end line with the hash of the weights after ``steps`` steps, and close."""
        self._fh.write(_dump({"end": True, "steps": steps, "sha256": model_sha256(self.model)}))
        self.sync()
        self._fh.close()

    def close(self) -> None:
        if not self._fh.closed:
            self.sync()
            self._fh.close()


@dataclass
class SeedLog:
    """A seed log read back: the header, the steps in order, and the end line if the run finished."""

    path: Path
    header: dict[str, Any]
    steps: list[StepRecord] = field(default_factory=list)
    end: dict[str, Any] | None = None

    @property
    def bytes_per_step(self) -> float:
        return self.path.stat().st_size / max(len(self.steps), 1)


# Header fields: required, and optional (an adapter to add first, the run's fingerprint, the block count).
_HEADER = {"format": str, "version": int, "model": str, "dtype": str, "optimizer": dict, "base_sha256": str}
_HEADER_OPTIONAL = {"peft": dict, "peft_seed": int, "fingerprint": str, "blocks": int}
# Without a logged block count (older logs), a plan may name up to this many blocks (no model has more tensors).
_MAX_BLOCKS = 1 << 16


def _check_header(header: dict[str, Any]) -> str | None:
    """What is wrong with a header (None: nothing)."""
    missing = sorted(set(_HEADER) - set(header))
    unknown = sorted(set(header) - set(_HEADER) - set(_HEADER_OPTIONAL))
    if missing or unknown:
        return f"header fields missing {missing} or unknown {unknown}"
    for name, kind in {**_HEADER, **_HEADER_OPTIONAL}.items():
        if name in header and (not isinstance(header[name], kind) or isinstance(header[name], bool)):
            return f"header field {name} is {header[name]!r}, not a {kind.__name__}"
    accepted = {f.name for f in dataclasses.fields(ZOConfig)}
    unknown = sorted(set(header["optimizer"]) - accepted)
    if unknown or "method" not in header["optimizer"]:
        return f"optimizer settings unknown {unknown} or without a method"
    if not 0 < header.get("blocks", 1) <= _MAX_BLOCKS:
        return f"header field blocks is {header['blocks']}"
    return None


def _record(line: dict[str, Any], num_blocks: int) -> StepRecord:
    values = (line["step"], line["seed"], line["lr"])
    if not (is_int(values[0]) and is_int(values[1]) and 0 <= values[1] < 2**63 and is_finite(values[2])
            and isinstance(line["losses"], list) and isinstance(line["grads"], list)
            and all(is_real(x) for x in line["losses"] + line["grads"])):
        raise ValueError("step, seed, lr, losses or grads")
    plan = _plan_from_runs(line["plan"], num_blocks) if "plan" in line else None
    return StepRecord(step=line["step"], seed=line["seed"], lr=float(line["lr"]),
                      losses=[float(x) for x in line["losses"]], grads=[float(x) for x in line["grads"]],
                      plan=plan, skipped=bool(line.get("skipped", False)))


def _check_end(line: dict[str, Any]) -> None:
    if not (is_int(line.get("steps")) and line["steps"] >= 0 and isinstance(line.get("sha256"), str)
            and len(line["sha256"]) == 64):
        raise ValueError("end line: steps or sha256")


def read_seed_log(path: str | Path) -> SeedLog:
    """Read and check a seed log: every line's fields and types, its checksum (an edited value is named by
    its line), plans within the model's blocks, and the step order.

    Raises:
        StateError: the file is missing, not a seed log, or corrupt before its last line.
    """
    path = Path(path)
    if path.exists() and not path.is_file():  # a FIFO would hang the read, /dev/zero exhaust memory
        raise StateError(f"Seed log {path} is not a regular file")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise StateError(f"Cannot read seed log {path}: {exc.strerror}") from exc
    lines = raw.split(b"\n")
    torn = lines.pop()  # the text after the last newline: empty, or a line a crash cut short
    if torn.strip():
        warnings.warn(f"{path}: ignoring an incomplete last line (the run was interrupted while writing it)",
                      ZotuneWarning, stacklevel=2)
    parsed, checked = [], None  # checked: whether the log carries checksums (those before them have none)
    for lineno, line in enumerate(lines, 1):
        try:
            value = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise StateError(f"{path}:{lineno}: corrupt seed log line ({type(exc).__name__})") from exc
        if not isinstance(value, dict):
            raise StateError(f"{path}:{lineno}: corrupt seed log line (not a JSON object)")
        check = value.pop("check", None)
        checked = check is not None if checked is None else checked
        if checked and check is None:  # a deleted checksum hides an edit: never blamed on float kernels
            raise StateError(f"{path}:{lineno}: the line has no checksum where the log's others have one "
                             "(it was changed after it was written)")
        if check is not None and check != _checksum(value):
            what = f"step {value['step']}" if isinstance(value.get("step"), int) else "its"
            raise StateError(f"{path}:{lineno}: {what} line was changed after it was written (checksum mismatch)")
        parsed.append(value)
    if not parsed or parsed[0].get("format") != FORMAT:
        raise StateError(f"{path} is not a zotune seed log (no header line)")
    header = parsed[0]
    if header.get("version") not in (1, VERSION):
        raise StateError(f"{path}: seed log version {header.get('version')} is not supported (this zotune "
                         f"reads versions 1 to {VERSION})")
    if isinstance(header.get("optimizer"), dict):  # a log written before a setting's rename
        header["optimizer"] = renamed_settings(header["optimizer"])
        if header["version"] == 1:
            header["optimizer"] = legacy_noise(header["optimizer"])
    problem = _check_header(header)
    if problem:
        raise StateError(f"{path}:1: corrupt seed log header ({problem})")
    num_blocks = header.get("blocks", _MAX_BLOCKS)
    log = SeedLog(path, header)
    for lineno, line in enumerate(parsed[1:], 2):
        if log.end is not None:
            raise StateError(f"{path}:{lineno}: lines after the end line")
        try:
            if "end" in line:
                _check_end(line)
                log.end = line
                continue
            record = _record(line, num_blocks)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise StateError(f"{path}:{lineno}: corrupt seed log line (bad or missing {exc})") from exc
        if record.step != len(log.steps):
            raise StateError(f"{path}:{lineno}: step {record.step} where step {len(log.steps)} was expected")
        log.steps.append(record)
    if log.end is not None and log.end["steps"] != len(log.steps):
        raise StateError(f"{path}:{len(parsed)}: the end line says {log.end['steps']} steps, the log holds "
                         f"{len(log.steps)}")
    return log
