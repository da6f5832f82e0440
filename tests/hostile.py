"""Helpers of the hostile-input tests: a finished run to attack (fixtures ``finished_run`` and ``run`` in
conftest.py), its folder's snapshot, and the one-line error every failure must give."""

from pathlib import Path

from zotune.files.outputs import LOCK_FILE

TRAIN_FILE = "data/rotten_tomatoes/train.jsonl"


def snapshot(folder: Path) -> dict[str, bytes]:
    # The lock file holds the id of the last process that locked the folder; everything else must stay as it was.
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != LOCK_FILE}


def train_args(model, data, out, *extra):
    return ["train", "--model", str(model), "--data-dir", str(data), "--output-dir", str(out), "--steps", "3",
            "--lr", "2e-3", "--eps", "1e-2", "--batch-size", "8", "--num-train", "32", "--num-dev", "8",
            "--num-eval", "8", "--eval-steps", "3", "--eval-batch-size", "16", "--no-progress", *extra]


def rerun_args(model, data, out, *extra):
    """A new run over the finished one, told to replace it: the checks must fail before anything is removed."""
    return train_args(model, data, out, "--overwrite", *extra)


def expect_one_line_error(capsys, pattern):
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if not line.startswith("zotune: warning:")]
    assert len(errors) == 1 and errors[0].startswith("zotune: error: "), err
    assert pattern in errors[0], errors[0]
