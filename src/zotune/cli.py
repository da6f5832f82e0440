"""The ``zotune`` command line: one subcommand per registered recipe (``zotune.recipes``: the built-in ``train``,
``eval``, ``replay``, ``plan``, ``push``, ``bench``, ``list`` in ``zotune.commands``, and a plug-in's, as ZO
Fine-tuner's ``meta-train``).

The only module that prints (recipes print through the ``say`` it hands them), reads the environment for
logging, or seeds the process (with the ``run`` of a recipe, which it calls). Every ``ZotuneError`` becomes one
line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from zotune.errors import Interrupted, ZotuneError, ZotuneWarning

if TYPE_CHECKING:
    from zotune.recipes import RecipeSpec

__all__ = ["main", "build_parser"]


class _Parser(argparse.ArgumentParser):
    """argparse with zotune's error style: one line and exit 2, not the whole usage block; no abbreviated
    flags (``--out`` must not silently mean ``--output-dir``)."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        self.exit(2, f"zotune: error: {message} (see {self.prog} --help)\n")


def _say(line: str, *, error: bool = False) -> None:
    """A recipe's line of output (its ``run(args, say)``), flushed so that it comes before any progress bar."""
    print(line, file=sys.stderr if error else sys.stdout, flush=True)


def _recipes() -> list[tuple[str, RecipeSpec]]:
    """``(name, RecipeSpec)`` of every registered recipe: the built-in ones in their order, then the plug-ins'
    (which register theirs when imported)."""
    import zotune.methods  # noqa: F401  (registers the methods' recipes)
    from zotune.recipes import BUILT_IN, RECIPES

    names = list(BUILT_IN) + [name for name in RECIPES.names() if name not in BUILT_IN]
    return [(name, RECIPES.get(name)) for name in names]


def build_parser() -> argparse.ArgumentParser:
    from zotune import __version__
    from zotune.commands.flags import add_setting_flags

    parser = _Parser(prog="zotune", description="Zeroth-order (forward-pass only) fine-tuning of language models.")
    parser.add_argument("--version", action="version", version=f"zotune {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, spec in _recipes():
        importlib.import_module(spec.module).add_arguments(sub.add_parser(name, help=spec.help), add_setting_flags)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _main(argv)
    except KeyboardInterrupt as exc:  # Ctrl-C while zotune starts (importing torch) or a second signal
        signum = getattr(exc, "signum", signal.SIGINT)
        print(f"zotune: stopped ({signal.Signals(signum).name})", file=sys.stderr)
        return 128 + signum


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    warnings.simplefilter("always", ZotuneWarning)
    warnings.formatwarning = _format_warning
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        from zotune.recipes import RECIPES

        return importlib.import_module(RECIPES.get(args.command).module).run(args, _say)
    except ZotuneError as exc:
        print(f"zotune: error: {exc}", file=sys.stderr)
        return 2
    except Interrupted as exc:
        print(f"zotune: stopped: {exc}", file=sys.stderr)
        return 128 + exc.signum
    except BrokenPipeError:
        # The reader went away (`zotune list | head`): stop quietly, and keep the exit flush from failing too.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except OSError as exc:  # a full disk, a read-only folder, ...: files already written are left whole
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"zotune: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # a bug in zotune or a library: one line, and the traceback on request
        if os.environ.get("ZOTUNE_TRACEBACK"):
            raise
        first = (str(exc).strip().splitlines() or [""])[0]
        print(f"zotune: internal error: {type(exc).__name__}: {first} (please report it; set ZOTUNE_TRACEBACK=1 "
              "for the traceback)", file=sys.stderr)
        return 1


def _format_warning(message, category, filename, lineno, line=None) -> str:
    """zotune's own warnings as ``zotune: warning: ...``; another library's with its category and source, so
    they are not taken for zotune's."""
    if issubclass(category, ZotuneWarning):
        return f"zotune: warning: {message}\n"
    return f"{category.__name__} ({Path(filename).name}:{lineno}): {message}\n"


if __name__ == "__main__":
    sys.exit(main())
