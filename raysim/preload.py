"""The training stack's imports on a thread, while the driver checks and Ray starts.

torch, Ray Train and raysim's recorder and node launcher cost the driver ~3 s of CPU on
one core, and a new embedded Ray spends ~4 s mostly waiting for the processes it
starts: importing on a thread lets the two overlap. The main thread imports none of
these modules before it waits for the thread, so the two never contend for a module's
import lock.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Sequence


class ImportsAhead:
    """Imports the modules in order on a thread; wait() returns once it is done."""

    def __init__(self, modules: Sequence[str]):
        self._thread = threading.Thread(
            target=self._import_all, args=(tuple(modules),), name="raysim-imports-ahead"
        )
        self._thread.start()

    @staticmethod
    def _import_all(modules: tuple[str, ...]) -> None:
        for name in modules:
            try:
                importlib.import_module(name)
            except Exception:  # the main thread's own import raises it, where it is told
                return

    def wait(self) -> None:
        self._thread.join()
