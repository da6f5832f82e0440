"""Output folders: one writer at a time, never a file zotune did not create, never an input.

The rules (docs/reliability.md): a command refuses an output that already holds a previous run's files unless
it continues that run (``--resume``) or the user says so (``--overwrite``, which removes only the files zotune
itself names); an input (a model folder, a data folder, a seed log, a base model) is never inside what a command
writes, nor the place it writes; and one process at a time writes a folder, under an advisory lock whose holder
is named in the error.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path

from zotune.errors import ConfigError

__all__ = ["FolderLock", "check_not_inputs", "existing_outputs", "remove_outputs", "LOCK_FILE"]

LOCK_FILE = ".zotune.lock"


def _inside(path: Path, folder: Path) -> bool:
    """``path`` is ``folder`` or lies under it (both resolved, so links and ``..`` cannot hide it)."""
    return path == folder or folder in path.parents


def check_not_inputs(writes: Mapping[str, str | Path | Iterable[str | Path]],
                     inputs: Mapping[str, str | Path | None], *, into: tuple[str, Path] | None = None) -> None:
    """Refuse when a command would write one of its inputs.

    Args:
        writes: what the command creates or replaces, by the flag that names it: a path, or several (a run's
            files in its output folder). A folder named here is replaced whole; one into which files are only
            added is given as its files.
        inputs: what it reads, by flag (``{"--model": "runs/x/best"}``); None entries are skipped, and so are
            names that are not local paths (hub ids, built-in names).
        into: ``(flag, folder)`` where the command adds files: it must not be an input folder itself.

    Raises:
        ConfigError: an input is, or lies inside, something written; or something written already exists inside an
            input folder (it would overwrite a file of that input). The message names both paths.
    """
    for in_name, in_path in inputs.items():
        if in_path is None or not Path(in_path).expanduser().exists():
            continue
        source = Path(in_path).expanduser().resolve()
        if into is not None and Path(into[1]).expanduser().resolve() == source:
            raise ConfigError(f"{into[0]} {into[1]} is {in_name}: zotune never writes into its inputs; choose "
                              f"another {into[0]}")
        for out_name, out_paths in writes.items():
            for out_path in [out_paths] if isinstance(out_paths, (str, Path)) else out_paths:
                target = Path(out_path).expanduser().resolve()
                if _inside(source, target) or (_inside(target, source) and os.path.lexists(out_path)):
                    raise ConfigError(f"{out_name} {_shown(out_paths)} would overwrite {in_name} {in_path}: zotune "
                                      f"never writes its inputs; choose another {out_name}")


def _shown(paths: str | Path | Iterable[str | Path]) -> str:
    return str(paths) if isinstance(paths, (str, Path)) else str(Path(next(iter(paths))).parent)


def existing_outputs(folder: Path, names: Iterable[str]) -> list[str]:
    """Which of the entries ``names`` a command is about to create in ``folder`` are there from before."""
    return [name for name in names if os.path.lexists(Path(folder) / name)]


# What zotune (through save_pretrained and its checkpoints) writes inside the folders it replaces whole: a file by
# any other name was put there by someone else, and --overwrite must not delete it.
_OWN_FILES = re.compile(
    r"(README\.md|config\.json|generation_config\.json|tokenizer(_config)?\.json|special_tokens_map\.json"
    r"|added_tokens\.json|chat_template\.(jinja|json)|vocab\.(json|txt)|merges\.txt|tokenizer\.model"
    r"|adapter_(config\.json|model\.safetensors)|model(-\d+-of-\d+)?\.safetensors|model\.safetensors\.index\.json"
    r"|weights\.safetensors|optimizer\.pt|loop_state\.json)")
_WHOLE_FOLDERS = ("best", "best.old", "best.partial", "final", "final.old", "final.partial", "checkpoint",
                  "checkpoint.old", "checkpoint.partial")


def foreign_files(folder: Path, names: Iterable[str]) -> list[Path]:
    """Files inside the model and checkpoint folders among ``names`` that zotune does not write."""
    found = []
    for name in names:
        path = Path(folder) / name
        if name in _WHOLE_FOLDERS and path.is_dir() and not path.is_symlink():
            found += [p for p in sorted(path.rglob("*")) if not p.is_dir() and not _OWN_FILES.fullmatch(p.name)]
    return found


def remove_outputs(folder: Path, names: Iterable[str]) -> None:
    """Remove the entries ``names`` of ``folder`` (``--overwrite``; only names zotune itself writes are passed).

    A link is removed, never followed: what it points to was not created by zotune.

    Raises:
        ConfigError: a model or checkpoint folder among them holds a file zotune does not write (checked before
            anything is removed).
    """
    names = list(names)
    foreign = foreign_files(folder, names)
    if foreign:
        shown = ", ".join(str(p.relative_to(folder)) for p in foreign[:3]) + (" ..." if len(foreign) > 3 else "")
        raise ConfigError(f"--overwrite would delete files zotune did not write ({shown}): move them out of "
                          f"{folder}, then run again")
    for name in names:
        path = Path(folder) / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif os.path.lexists(path):
            path.unlink()


class FolderLock:
    """An advisory lock on an output folder (``flock`` on ``folder/.zotune.lock``), held while a run writes it.

    The lock file holds the holder's process id, so a second writer is told which process to wait for. The lock
    goes with the process (a killed run leaves no stale lock), and the file is left in place: deleting it would
    let a third process lock a new file while a second still waits on the old one.
    """

    def __init__(self, folder: str | Path) -> None:
        self.path = Path(folder) / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> FolderLock:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip() or "another process"
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                raise ConfigError(f"{self.path.parent} is in use by process {holder} (lock {self.path}): one run "
                                  "writes a folder at a time; wait for it or choose another folder") from exc
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the lock
            self._fd = None

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
