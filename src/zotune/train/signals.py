"""Graceful stop: SIGINT/SIGTERM ask the loop to checkpoint and stop at the next step boundary."""

from __future__ import annotations

import signal
import threading
from types import FrameType

from zotune.errors import StopNow

__all__ = ["StopRequests"]


class StopRequests:
    """Context manager that turns the first SIGINT or SIGTERM into a flag (``signum``) the loop polls.

    A second signal while the first is being handled raises ``StopNow`` (a ``KeyboardInterrupt``) at once, for users who do not
    want to wait. Outside the main thread (where Python cannot install handlers) it does nothing.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None:
            raise StopNow(signum)
        self.signum = signum

    def __enter__(self) -> StopRequests:
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
