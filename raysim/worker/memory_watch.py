"""A node's training memory, kept on disk while its CPU partition is enforced.

At the partition's limit (RLIMIT_DATA) an allocation can fail in a thread that cannot
raise it (Ray's, gloo's, oneDNN's) and the process dies instead of the training thread
raising the clear error. What the watch last wrote lets the driver tell that death from
any other (raysim.failures.died_at_limit).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from raysim.failures import NodeMemory
from raysim.worker.memory import MemoryGuard

WATCH_INTERVAL_S = 0.02
"""A forward pass that runs out fills its partition over hundreds of milliseconds."""


class MemoryWatch:
    """Samples the guard's memory in a thread and rewrites one line at `path` in place."""

    def __init__(self, guard: MemoryGuard, path: Path):
        self._guard = guard
        self._path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="raysim-memory-watch", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        peak = 0
        while not self._stop.wait(WATCH_INTERVAL_S):
            try:
                used = self._guard.used_bytes()
                peak = max(peak, used, self._guard.peak_bytes)
                os.pwrite(self._fd, NodeMemory(used, peak, self._guard.budget_bytes).line(), 0)
            except (MemoryError, OSError):  # at the limit this thread's own allocations fail
                continue

    def close(self) -> None:
        """The node ended in its own time (finished or raised): nothing to explain."""
        self._stop.set()
        self._thread.join()
        os.close(self._fd)
        self._path.unlink(missing_ok=True)
