"""Metric loggers: the loop hands them plain dicts; they decide where records go."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Protocol

from zotune.errors import StateError
from zotune.files.jsonl import json_objects

__all__ = ["MetricLogger", "JsonlLogger", "NullLogger", "FanOut", "tracker_loggers", "REPORTERS", "read_jsonl"]


class MetricLogger(Protocol):
    def log(self, record: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


def _clean(value: Any) -> Any:
    # JSON has no NaN: a skipped step's loss is written as null.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class JsonlLogger:
    """Appends one JSON object per record to a file, flushed after each write."""

    def __init__(self, path: str | Path, *, append: bool = False) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.path, "a" if append else "w", encoding="utf-8")

    def log(self, record: dict[str, Any]) -> None:
        self._fh.write(json.dumps({k: _clean(v) for k, v in record.items()}) + "\n")
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()


class NullLogger:
    """Drops every record (the processes of a distributed run other than the first)."""

    def log(self, record: dict[str, Any]) -> None:
        return None

    def close(self) -> None:
        return None


class FanOut:
    """Hands every record to each of several loggers (``metrics.jsonl`` and the trackers of ``--report-to``)."""

    def __init__(self, loggers: list[MetricLogger]) -> None:
        self.loggers = loggers

    def log(self, record: dict[str, Any]) -> None:
        for logger in self.loggers:
            logger.log(record)

    def close(self) -> None:
        for logger in self.loggers:
            logger.close()


class TensorBoardLogger:
    """Writes each record's numbers as TensorBoard scalars ``<kind>/<name>`` at its step (files only: offline)."""

    def __init__(self, folder: str | Path, *, resume_at: int | None = None) -> None:
        from torch.utils.tensorboard import SummaryWriter

        # A resumed run logs again the steps after its checkpoint: TensorBoard hides the first run's events from
        # that step on, so no step shows twice.
        self._writer = SummaryWriter(log_dir=str(folder), purge_step=None if resume_at is None else resume_at + 1)

    def log(self, record: dict[str, Any]) -> None:
        kind, step = record.get("kind", "train"), record.get("step", 0)
        for name, value in record.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and name != "step" \
                    and math.isfinite(value):
                self._writer.add_scalar(f"{kind}/{name}", value, step)
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


class WandbLogger:
    """Logs each record to Weights & Biases (``wandb`` installed and configured: ``wandb login`` or offline mode)."""

    def __init__(self, folder: str | Path, config: dict[str, Any], name: str) -> None:
        import wandb

        self._run = wandb.init(project="zotune", name=name, config=config, dir=str(folder))

    def log(self, record: dict[str, Any]) -> None:
        kind = record.get("kind", "train")
        values = {f"{kind}/{k}": v for k, v in record.items()
                  if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "step"}
        self._run.log(values, step=record.get("step", 0))

    def close(self) -> None:
        self._run.finish()


# --report-to names -> the package each needs.
REPORTERS = {"tensorboard": "tensorboard", "wandb": "wandb"}


def check_reporters(names: list[str]) -> None:
    """Every name is known and its package importable.

    Raises:
        ConfigError: naming the unknown tracker, or the package to install.
    """
    import importlib.util

    from zotune.errors import ConfigError

    for name in names:
        if name not in REPORTERS:
            raise ConfigError(f"Invalid report_to {name!r} (one of {', '.join(REPORTERS)}, or none)")
        if importlib.util.find_spec(REPORTERS[name]) is None:
            raise ConfigError(f"--report-to {name} needs the {REPORTERS[name]} package: pip install {REPORTERS[name]}")


def tracker_loggers(names: list[str], folder: Path, config: dict[str, Any], name: str,
                    resume_at: int | None = None) -> list[Any]:
    """The loggers of ``--report-to`` (names checked by ``check_reporters``; one each, however often named):
    TensorBoard event files in ``folder/tensorboard``, a W&B run. ``resume_at``: the step a resumed run goes on
    from."""
    made = {"tensorboard": lambda: TensorBoardLogger(folder / "tensorboard", resume_at=resume_at),
            "wandb": lambda: WandbLogger(folder, config, name)}
    return [made[n]() for n in dict.fromkeys(names)]


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """The records of a JSON-lines file; a last line cut short by a crash (no newline) is dropped.

    Raises:
        StateError: the file cannot be read, is not UTF-8, or holds a line that is not a JSON object.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise StateError(f"Cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from exc
    lines = text.split("\n")
    if lines and lines[-1].strip():
        try:
            json.loads(lines[-1])
        except json.JSONDecodeError:
            lines.pop()
    return json_objects(lines, path, StateError, "corrupt line")
