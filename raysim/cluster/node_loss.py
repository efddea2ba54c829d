"""Driver side of the node_loss fault: the simulated node's Ray node goes, as a dead host."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from raysim.cluster.fault_watch import FaultMarkerWatcher


class NodeLossWatcher(FaultMarkerWatcher):
    """Driver side of node_loss: removes the Ray node of each simulated node whose
    node_loss marker appears."""

    def __init__(
        self,
        run_dir: Path,
        remove_node: Callable[[int], Any],
        on_removed: Callable[[dict, Any], None] | None = None,
    ):
        """remove_node(rank) takes the node away; on_removed(fault, what it returned) is
        told after."""
        super().__init__(run_dir, "node_loss")
        self.remove_node = remove_node
        self.on_removed = on_removed

    def on_fault(self, fault: dict) -> None:
        removed = self.remove_node(fault["rank"])
        if self.on_removed is not None:
            self.on_removed(fault, removed)
