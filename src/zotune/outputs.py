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
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path

from zotune.errors import ConfigError

__all__ = ["FolderLock", "check_not_inputs", "claim_outputs", "LOCK_FILE"]

LOCK_FILE = ".zotune.lock"


def _inside(path: Path, folder: Path) -> bool:
    """``path`` is ``folder`` or lies under it (both resolved, so links and ``..`` cannot hide it)."""
    return path == folder or folder in path.parents


def check_not_inputs(writes: Mapping[str, str | Path], inputs: Mapping[str, str | Path | None]) -> None:
    """Refuse when a path a command writes (or replaces) is an input, holds one, or lies inside one.

    Args:
        writes: what the command writes, by what it is (``{"--out": "runs/x/replayed"}``).
        inputs: what it reads, by what it is (``{"--model": "runs/x/best"}``); None entries are skipped, and so
            are names that are not local paths (hub ids).

    Raises:
        ConfigError: naming the two paths.
    """
    for in_name, in_path in inputs.items():
        if in_path is None or not Path(in_path).expanduser().exists():
            continue
        source = Path(in_path).expanduser().resolve()
        for out_name, out_path in writes.items():
            target = Path(out_path).expanduser().resolve()
            if _inside(source, target) or _inside(target, source):
                raise ConfigError(f"{out_name} {out_path} would write into {in_name} {in_path}: zotune never "
                                  f"writes its inputs; choose another {out_name}")


def claim_outputs(folder: Path, names: Iterable[str], *, overwrite: bool, how: str) -> None:
    """Make sure no file or folder of ``names`` in ``folder`` is there from before, or remove them on request.

    Args:
        names: the entries the command is about to create (only these are ever removed).
        overwrite: remove those that exist (``--overwrite``); otherwise refuse.
        how: how the user continues or replaces them instead, for the error message.

    Raises:
        ConfigError: some exist and ``overwrite`` is false.
    """
    found = [name for name in names if os.path.lexists(folder / name)]
    if not found:
        return
    if not overwrite:
        raise ConfigError(f"{folder} already holds a run ({', '.join(found)}): {how}")
    for name in found:
        path = folder / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
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
