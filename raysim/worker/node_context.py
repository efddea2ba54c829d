"""What a training function is told about its simulated node (raysim.worker.context())."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from raysim.worker.preemption import PreemptionNotice, local_notice


@dataclass(frozen=True)
class NodeContext:
    node_id: str
    """The simulated node: node-<rank>, or under multi_node its Ray node's label (ranks
    move when an elastic run loses a node; the node keeps its name)."""
    ray_node_id: str
    """The Ray node this simulated node landed on (a real node on an existing cluster)."""
    rank: int
    world_size: int
    device: torch.device
    memory_budget_bytes: int
    """The memory this node may use (its share of the device, enforced unless
    enforce_memory is off on a CPU host)."""
    run_dir: Path
    """This run's directory."""
    cache_dir: Path
    """Where data decoded once is kept for every run ($RAYSIM_HOME/cache)."""

    @property
    def preemption(self) -> PreemptionNotice | None:
        """The preemption notice this node holds now (None: none), as Ray Train's watcher
        handed it over once Ray Core drained a node of the group; read it as often as you
        like. To act on it at the same step on every node, use raysim.worker.preemption_notice()."""
        return local_notice()

    @property
    def node_index(self) -> int:
        return int(self.node_id.rsplit("-", 1)[1])
