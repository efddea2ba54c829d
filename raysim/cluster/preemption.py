"""Driver side of the preempt fault: the simulated node's Ray node is drained through Ray
Core, as a spot instance's reclaim notice, and goes at the deadline.

Ray Core's drain (the GCS's DrainNode with reason preemption and a deadline) is what Ray's
autoscaler sends when a cloud announces a reclaim; Ray Train's PreemptionWatcher sees the
drain and hands the notice to every worker, and its controller waits in its
PreemptingState until the deadline, then restarts the worker group. Two parts are the
cloud's and its autoscaler's, not Ray's, and raysim plays them: a replacement Ray node
for the simulated node at the notice (as Karpenter or a managed instance group starts one
when told of a reclaim), and at the deadline the drained node's end (Ray never ends a
drained node itself: `ray drain-node --help`)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from raysim.rundir import fired_faults


class PreemptionDriver:
    """For each preempt marker that appears: drain(rank, deadline_unix) now, and at the
    deadline reclaim(what drain returned). Markers from before it started (a resumed run)
    were handled by the run that fired them."""

    POLL_S = 0.2

    def __init__(
        self,
        run_dir: Path,
        drain: Callable[[int, float], Any],
        reclaim: Callable[[Any], Any],
        on_drained: Callable[[dict, Any], None] | None = None,
    ):
        """drain(rank, deadline_unix) drains the node (and starts its replacement);
        reclaim(drained) ends it; on_drained(fault, drained) is told after the drain."""
        self.run_dir = Path(run_dir)
        self.drain = drain
        self.reclaim = reclaim
        self.on_drained = on_drained
        self.handled = {f["index"] for f in fired_faults(self.run_dir)}
        self.pending: list[tuple[float, Any]] = []
        """(deadline_unix, drained) of each drained node still up."""
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._watch, name="raysim-preempt", daemon=True)

    def __enter__(self) -> PreemptionDriver:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()

    def _watch(self) -> None:
        while not self.stop.wait(self.POLL_S):
            for fault in fired_faults(self.run_dir):
                if fault["kind"] == "preempt" and fault["index"] not in self.handled:
                    self.handled.add(fault["index"])
                    self._drain(fault)
            now = time.time()
            for deadline, drained in [p for p in self.pending if p[0] <= now]:
                self.pending.remove((deadline, drained))
                self.reclaim(drained)

    def _drain(self, fault: dict) -> None:
        deadline = time.time() + fault["notice_s"]
        drained = self.drain(fault["rank"], deadline)
        self.pending.append((deadline, drained))
        if self.on_drained is not None:
            self.on_drained(fault, drained)
