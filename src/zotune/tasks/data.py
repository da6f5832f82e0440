"""Loading task rows (local JSON lines / CSV, the packaged default, or ``datasets``) and MeZO's sampling."""

from __future__ import annotations

import csv
import io
import json
import random
import warnings
from dataclasses import dataclass
from pathlib import Path

from zotune.assets import BUILTIN_DATASETS, fetch_dataset, read_rotten_tomatoes
from zotune.errors import AssetError, DataError, ZotuneWarning
from zotune.files.jsonl import json_objects
from zotune.tasks.base import Task

__all__ = ["load_splits", "read_rows", "sample_splits", "sample_mezo", "TaskData"]

_SPLITS = ("train", "validation")
# The packaged corpus has no splits: a fixed shuffle holds out this fraction as "validation".
_BUILTIN_HOLDOUT = 0.2
_BUILTIN_SPLIT_SEED = 20240101


@dataclass
class TaskData:
    train: list[dict]
    dev: list[dict]
    eval: list[dict]


def read_rows(path: Path) -> list[dict]:
    """Rows of a ``.jsonl``/``.json`` (one object per line, or a ``.json`` array of objects) or ``.csv`` (header
    row) file.

    Raises:
        DataError: unreadable, not UTF-8, malformed, or empty.
    """
    try:  # bytes, then text: read_text would turn a quoted CSV field's \r and \r\n into \n
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror})") from exc
    rows: list[dict] = []
    if path.suffix == ".csv":
        try:  # csv reads the line ends itself, so a quoted field keeps its newlines
            rows = [dict(r) for r in csv.DictReader(io.StringIO(text, newline=""))]
        except csv.Error as exc:
            raise DataError(f"{path}: malformed CSV ({exc})") from exc
        for row in rows:  # CSV has no types; labels are class indices
            if isinstance(row.get("label"), str) and row["label"].strip().lstrip("-").isdigit():
                row["label"] = int(row["label"])
    elif path.suffix == ".json" and text.lstrip().startswith("["):  # one JSON array of row objects
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: malformed JSON array (line {exc.lineno}: {exc.msg})") from exc
        bad = next((i for i, row in enumerate(rows) if not isinstance(row, dict)), None)
        if bad is not None:
            raise DataError(f"{path}: item {bad + 1} of the JSON array is not an object (a row of named fields)")
    else:
        rows = json_objects(text.split("\n"), path, DataError, "malformed JSON")
    if not rows:
        raise DataError(f"{path}: no rows")
    return rows


def _find_split(folder: Path, split: str) -> Path | None:
    for suffix in (".jsonl", ".json", ".csv"):
        if (folder / f"{split}{suffix}").is_file():
            return folder / f"{split}{suffix}"
    return None


# Fields that hold a label or structured answers; every other field a template reads must be text.
_NOT_TEXT = frozenset({"label", "entities", "answers", "answers_spans"})


def _check_fields(task: Task, rows: list[dict], source: str) -> None:
    for i, row in enumerate(rows):
        missing = [f for f in task.fields if f not in row]
        if missing:
            raise DataError(
                f"{source}: row {i + 1} lacks field(s) {missing} needed by task {task.name!r} "
                f"(it has {sorted(row)})"
            )
        for name in task.fields:
            if name not in _NOT_TEXT and name != task.label_field and not isinstance(row[name], str):
                raise DataError(f"{source}: row {i + 1}: field {name!r} is {json.dumps(row[name])[:40]}, not text")
        try:
            task.label(row)
            prompt, candidates = task.prompt(row), task.candidates(row)
            if task.kind == "generation":
                task.gold_answers(row)
        except DataError as exc:
            raise DataError(f"{source}: row {i + 1}: {exc}") from exc
        except (TypeError, KeyError, AttributeError, IndexError, ValueError) as exc:
            raise DataError(f"{source}: row {i + 1}: malformed for task {task.name!r} ({type(exc).__name__}: "
                            f"{exc})") from exc
        if not isinstance(prompt, str) or not all(isinstance(c, str) for c in candidates):
            raise DataError(f"{source}: row {i + 1}: its answers or choices are not text")


def load_splits(task: Task, data_dir: str | Path | None = None) -> dict[str, list[dict]]:
    """The task's ``train`` and ``validation`` rows.

    Sources, in order: ``data_dir/<task>/`` or ``data_dir/`` itself holding ``train.jsonl`` and
    ``validation.jsonl`` (or ``.csv``); the packaged corpus for built-in datasets; ``datasets.load_dataset`` on
    the task's hub name.

    Raises:
        DataError: missing or malformed files, rows lacking fields, labels not among the candidates.
        AssetError: the hub route failed.
    """
    if data_dir is not None:
        root = Path(data_dir).expanduser()
        if not root.is_dir():
            raise DataError(f"Data directory not found: {data_dir}")
        folder = root / task.name if (root / task.name).is_dir() else root
        if (folder / "dataset_dict.json").is_file():  # a `datasets` DatasetDict saved with save_to_disk
            return _from_disk(task, folder)
        if (folder / "state.json").is_file() and (folder / "dataset_info.json").is_file():
            raise DataError(f"{folder} holds one `datasets.Dataset` with no splits: save a DatasetDict with train "
                            "and validation splits (DatasetDict(train=..., validation=...).save_to_disk(folder)), "
                            "or put train and validation files (.jsonl, .json or .csv) in the folder")
        splits = {}
        for split in _SPLITS:
            path = _find_split(folder, split)
            if path is None and split == "train" and _find_split(folder, "validation") is not None:
                continue  # split from validation below
            if path is None:
                raise DataError(f"No {split}.jsonl or {split}.csv in {folder} for task {task.name!r}")
            splits[split] = read_rows(path)
            _check_fields(task, splits[split], str(path))
        if "train" not in splits:
            return _split_validation(task, splits["validation"], folder)
        return splits
    if task.name in BUILTIN_DATASETS:
        rows = read_rotten_tomatoes(fetch_dataset(task.name))
        order = list(range(len(rows)))
        random.Random(_BUILTIN_SPLIT_SEED).shuffle(order)
        cut = int(len(rows) * (1 - _BUILTIN_HOLDOUT))
        return {"train": [rows[i] for i in order[:cut]], "validation": [rows[i] for i in order[cut:]]}
    if task.hub is None:
        raise DataError(f"Task {task.name!r} has no built-in data: pass --data-dir")
    try:
        import datasets

        loaded = datasets.load_dataset(*task.hub)
    except Exception as exc:  # offline, missing builder, ...: say what to do instead
        raise AssetError(
            f"Could not load {task.hub} with datasets ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}); "
            f"pass --data-dir with {task.name}/train.jsonl and {task.name}/validation.jsonl"
        ) from exc
    splits = {split: [dict(r) for r in loaded[split]] for split in _SPLITS}
    for split, rows in splits.items():
        _check_fields(task, rows, f"{task.hub}[{split}]")
    return splits


def _from_disk(task: Task, folder: Path) -> dict[str, list[dict]]:
    try:
        import datasets

        loaded = datasets.load_from_disk(str(folder))
    except Exception as exc:  # datasets raises several kinds for a damaged folder
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise DataError(f"{folder}: not a readable `datasets` folder ({reason})") from exc
    missing = [split for split in _SPLITS if split not in loaded]
    if missing:
        raise DataError(f"{folder}: the saved dataset has no {', '.join(missing)} split (it has {sorted(loaded)})")
    splits = {split: [dict(r) for r in loaded[split]] for split in _SPLITS}
    for split, rows in splits.items():
        if not rows:
            raise DataError(f"{folder}[{split}]: no rows")
        _check_fields(task, rows, f"{folder}[{split}]")
    return splits


def _split_validation(task: Task, rows: list[dict], folder: Path) -> dict[str, list[dict]]:
    """A folder with only ``validation`` (BoolQ and SQuAD in the offline pack): halves, from a fixed seed."""
    warnings.warn(f"{folder} has no train split for {task.name!r}: training and dev rows come from one half of "
                  f"validation, held-out rows from the other (fixed seed {_BUILTIN_SPLIT_SEED})", ZotuneWarning,
                  stacklevel=3)
    order = list(range(len(rows)))
    random.Random(_BUILTIN_SPLIT_SEED).shuffle(order)
    cut = len(rows) // 2
    return {"train": [rows[i] for i in order[:cut]], "validation": [rows[i] for i in order[cut:]]}


def sample_splits(
    splits: dict[str, list[dict]], *, num_train: int, num_dev: int, num_eval: int, seed: int = 0
) -> TaskData:
    """The rows a run uses, by MeZO's protocol (arXiv 2305.17333, appendix E): ``num_train`` + ``num_dev``
    disjoint rows from train, ``num_eval`` from validation.

    Sizes larger than a split are cut to fit, with a warning.
    """
    train_pool, eval_pool = splits["train"], splits["validation"]
    rng = random.Random(seed)
    want = num_train + num_dev
    if want > len(train_pool):
        asked = f"{num_train} train + {num_dev} dev"
        # dev takes at most a fifth, so a short split still leaves most rows to train on
        num_dev = min(num_dev, len(train_pool) // 5)
        num_train = len(train_pool) - num_dev
        warnings.warn(
            f"Asked for {asked} rows but the train split has {len(train_pool)}; "
            f"using all of it: {num_train} train + {num_dev} dev",
            ZotuneWarning,
            stacklevel=2,
        )
    picked = rng.sample(range(len(train_pool)), num_train + num_dev)
    if num_eval > len(eval_pool):
        warnings.warn(
            f"Asked for {num_eval} eval rows but the validation split has {len(eval_pool)}; using all of it",
            ZotuneWarning,
            stacklevel=2,
        )
        num_eval = len(eval_pool)
    eval_idx = random.Random(seed + 1).sample(range(len(eval_pool)), num_eval)
    return TaskData(
        train=[train_pool[i] for i in picked[:num_train]],
        dev=[train_pool[i] for i in picked[num_train:]],
        eval=[eval_pool[i] for i in eval_idx],
    )


def sample_mezo(splits: dict[str, list[dict]], **sizes: int) -> TaskData:
    """Deprecated name of :func:`sample_splits`."""
    warnings.warn("zotune.tasks.sample_mezo is now sample_splits", FutureWarning, stacklevel=2)
    return sample_splits(splits, **sizes)
