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

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from raysim.cluster.fault_watch import FaultMarkerWatcher


class PreemptionDriver(FaultMarkerWatcher):
    """For each preempt marker that appears: drain(rank, deadline_unix) now, and at the
    deadline reclaim(what drain returned). Markers from before it started (a resumed run)
    were handled by the run that fired them."""

    def __init__(
        self,
        run_dir: Path,
        drain: Callable[[int, float], Any],
        reclaim: Callable[[Any], Any],
        on_drained: Callable[[dict, Any], None] | None = None,
    ):
        """drain(rank, deadline_unix) drains the node (and starts its replacement);
        reclaim(drained) ends it; on_drained(fault, drained) is told after the drain."""
        super().__init__(run_dir, "preempt")
        self.drain = drain
        self.reclaim = reclaim
        self.on_drained = on_drained
        self.pending: list[tuple[float, Any]] = []
        """(deadline_unix, drained) of each drained node still up."""

    def on_fault(self, fault: dict) -> None:
        deadline = time.time() + fault["notice_s"]
        drained = self.drain(fault["rank"], deadline)
        self.pending.append((deadline, drained))
        if self.on_drained is not None:
            self.on_drained(fault, drained)

    def tick(self) -> None:
        now = time.time()
        for deadline, drained in [p for p in self.pending if p[0] <= now]:
            self.pending.remove((deadline, drained))
            self.reclaim(drained)
