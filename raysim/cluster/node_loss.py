"""Driver side of the node_loss fault: the simulated node's Ray node goes, as a dead host."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from raysim.rundir import fired_faults


class NodeLossWatcher:
    """Driver side of node_loss: removes the Ray node of each simulated node whose
    node_loss marker appears. Markers from before the watcher started (a resumed run)
    were handled by the run that fired them."""

    POLL_S = 0.2

    def __init__(
        self,
        run_dir: Path,
        remove_node: Callable[[int], Any],
        on_removed: Callable[[dict, Any], None] | None = None,
    ):
        """remove_node(rank) takes the node away; on_removed(fault, what it returned) is
        told after."""
        self.run_dir = Path(run_dir)
        self.remove_node = remove_node
        self.on_removed = on_removed
        self.handled = {f["index"] for f in fired_faults(self.run_dir)}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._watch, name="raysim-node-loss", daemon=True)

    def __enter__(self) -> NodeLossWatcher:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()

    def _watch(self) -> None:
        while not self.stop.wait(self.POLL_S):
            for fault in fired_faults(self.run_dir):
                if fault["kind"] == "node_loss" and fault["index"] not in self.handled:
                    self.handled.add(fault["index"])
                    removed = self.remove_node(fault["rank"])
                    if self.on_removed is not None:
                        self.on_removed(fault, removed)
