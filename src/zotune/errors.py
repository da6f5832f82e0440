"""The zotune exception tree.

Every error a user can cause is a ``ZotuneError``; the CLI turns it into one line and exit code 2. The
subclasses also inherit the matching builtin, so callers who catch ``ValueError`` or ``KeyError`` keep working.
"""

from __future__ import annotations

__all__ = [
    "ZotuneError",
    "ConfigError",
    "DataError",
    "AssetError",
    "UnknownNameError",
    "RegistryError",
    "StateError",
    "NonFiniteLossError",
    "ZotuneWarning",
    "Interrupted",
]


class ZotuneError(Exception):
    """Base class of every error zotune raises on purpose."""


class ConfigError(ZotuneError, ValueError):
    """An argument or configuration value is invalid."""


class DataError(ZotuneError, ValueError):
    """A data file is missing, empty, malformed, or holds a row the task cannot use."""


class AssetError(ZotuneError, OSError):
    """A model or dataset could not be found, downloaded or converted."""


class UnknownNameError(ZotuneError, KeyError):
    """A registry lookup failed; the message lists close matches and every available name."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class RegistryError(ZotuneError, ValueError):
    """A name was registered twice, or is not a valid key."""


class StateError(ZotuneError, RuntimeError):
    """A checkpoint or state dict does not fit the object it is loaded into."""


class NonFiniteLossError(ZotuneError, FloatingPointError):
    """Training produced non-finite losses too many times in a row."""


class ZotuneWarning(UserWarning):
    """Soft problems: skipped steps, ignored options, biased settings."""


class Interrupted(Exception):
    """Training stopped on SIGINT or SIGTERM after saving a checkpoint; ``--resume`` continues it.

    Not a ``ZotuneError``: the CLI exits with 128 + the signal number, as shells expect.
    """

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.signum = signum


class StopNow(KeyboardInterrupt):
    """A second SIGINT or SIGTERM while the first is being handled: stop at once, without a checkpoint (the last
    one stays). A ``KeyboardInterrupt``, so that no ``except Exception`` swallows it; the CLI exits with 128 +
    ``signum`` (143 for SIGTERM), as shells expect."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum
