"""Crash-safe writes: every file or folder appears whole at its final path, or not at all.

A write goes to a temporary name beside the target, is fsynced, and is renamed over the target (a rename within
one filesystem is atomic on POSIX); the parent folder is then fsynced so the rename itself survives a power
loss. A process killed at any moment leaves either the old version or the new one, plus at most a stray
temporary that the next write removes.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from zotune.errors import ConfigError

__all__ = ["atomic_write_text", "atomic_write", "replace_folder", "fsync_path", "check_writable", "previous_folder"]


def fsync_path(path: str | Path) -> None:
    """fsync a file, or a folder's entry table."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> None:
    """Run ``write(tmp)`` to produce the file at a temporary path, then move it to ``path`` durably."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")  # keeps the suffix: savefig reads the format from it
    try:
        write(tmp)
        fsync_path(tmp)
        os.replace(tmp, path)
    except Exception as exc:
        _raise_if_disk_full(exc, path, _size(tmp))
        raise
    finally:
        tmp.unlink(missing_ok=True)
    fsync_path(path.parent)


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else 0


def _raise_if_disk_full(exc: BaseException, target: Path, written: int) -> None:
    """A full disk, whichever library met it (safetensors raises its own error kind with the OS message), as
    one ``OSError(ENOSPC)`` that names the target, the space it needs and the space there is."""
    full = (isinstance(exc, OSError) and exc.errno == errno.ENOSPC) or "No space left on device" in str(exc)
    if not full:
        return
    previous = _size(target)
    free = shutil.disk_usage(target.parent if target.parent.exists() else ".").free
    need = (f"about {max(previous, written) / 1e6:.1f} MB (the copy it replaces)" if previous > written
            else f"more than the {written / 1e6:.1f} MB written before the disk filled")
    raise OSError(errno.ENOSPC, f"No space left on device to save {target.name}: it needs {need}, "
                                f"{free / 1e6:.1f} MB are free; the previous copy is intact", str(target)) from exc


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def replace_folder(folder: str | Path, write: Callable[[Path], None]) -> None:
    """Run ``write(tmp_folder)`` to fill a new folder, then put it in ``folder``'s place.

    Two renames are needed (a folder cannot be renamed over a non-empty one): ``folder`` -> ``folder.old``, then
    the new one -> ``folder``. A crash between them leaves ``folder.old``, which :func:`previous_folder` finds.
    """
    folder = Path(folder)
    if folder.is_symlink():  # a link the user made (to another disk, say) stays; its target is replaced
        folder = folder.resolve()
    tmp = folder.with_name(folder.name + ".partial")
    old = folder.with_name(folder.name + ".old")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        write(tmp)
        for child in tmp.iterdir():
            fsync_path(child)
        fsync_path(tmp)
    except BaseException as exc:
        written = _size(tmp)
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, Exception):
            _raise_if_disk_full(exc, folder, written)
        raise
    if folder.exists():
        shutil.rmtree(old, ignore_errors=True)
        folder.rename(old)
    tmp.rename(folder)
    fsync_path(folder.parent)
    shutil.rmtree(old, ignore_errors=True)


def previous_folder(folder: str | Path) -> Path | None:
    """``folder`` if it exists, else the ``folder.old`` a crash in :func:`replace_folder` left, else None."""
    folder = Path(folder)
    for candidate in (folder, folder.with_name(folder.name + ".old")):
        if candidate.is_dir():
            return candidate
    return None


def check_writable(folder: str | Path) -> None:
    """Create ``folder`` if needed and check that a file can be written in it.

    Raises:
        ConfigError: the folder cannot be created or written (read-only, not a folder, no permission).
    """
    folder = Path(folder)
    probe = folder / ".zotune-write-test"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.close(fd)
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"Output directory {folder} is not writable ({exc.strerror or exc})") from exc
