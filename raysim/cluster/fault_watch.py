"""The driver's watch on the run's fault markers: a thread that hands each newly fired
fault of one kind to its handler, once (node_loss and preempt act on Ray nodes from it)."""

from __future__ import annotations

import threading
from pathlib import Path

from raysim.rundir import fired_faults


class FaultMarkerWatcher:
    """Calls on_fault(fault) for each marker of `kind` that appears while it runs, and
    tick() at every poll. Markers from before it started (a resumed run) were handled by
    the run that fired them."""

    POLL_S = 0.2

    def __init__(self, run_dir: Path, kind: str):
        self.run_dir = Path(run_dir)
        self.kind = kind
        self.handled = {f["index"] for f in fired_faults(self.run_dir)}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._watch, name=f"raysim-{kind}", daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()

    def on_fault(self, fault: dict) -> None:
        raise NotImplementedError

    def tick(self) -> None:
        """Work due at each poll besides new markers (none by default)."""

    def _watch(self) -> None:
        while not self.stop.wait(self.POLL_S):
            for fault in fired_faults(self.run_dir):
                if fault["kind"] == self.kind and fault["index"] not in self.handled:
                    self.handled.add(fault["index"])
                    self.on_fault(fault)
            self.tick()
