"""Each node's memory under a strategy at N nodes, composed from one unsharded step's
categories (probe.py): pure arithmetic, so any N answers at once.

Per node, in bytes:

- resident: parameters (1/N under fsdp), buffers, optimizer state (1/N under zero and
  fsdp); gradients (1/N under fsdp) from the first backward on;
- optimizer step: its temporaries (torch's single-tensor Adam on the CPU makes them one
  parameter at a time): 1/N under fsdp, whose every parameter is sharded; whole under
  zero, whose nodes own whole parameters, the largest among them;
- activations: the forward's, as the probe measured them at its end;
- communication: none for DDP's buckets (raysim's DDP keeps the gradients as views into
  them, gradient_as_bucket_view), ZeRO's flat message of one owner's parameters; FSDP
  holds a unit's parameters gathered with the next one's (prefetched), and the unit's
  unsharded gradients: at most the largest unit twice and the next largest once.

The peak adds them all: activations and gradients overlap only in part during backward, so
it errs high against the step's tensors. What raysim's CPU budget charges is the peak less
the parameters already resident when the node's baseline is measured (after the strategy's
wrapper); its measure, the resident high-water mark within steps, also holds what the
allocator keeps of freed tensors and the step's temporaries, so it sees more (README,
"Sharded data parallel").
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

STRATEGIES = ("ddp", "zero", "fsdp")


@dataclass(frozen=True)
class StepMemory:
    """One unsharded training step's tensors by category (bytes), as the probe saw them."""

    parameters: int
    buffers: int
    gradients: int
    optimizer: int
    """The optimizer's state."""
    optimizer_step: int
    """What the optimizer's step holds beyond its state at the step's peak (temporaries)."""
    activations: int
    largest_unit: int
    """The largest default FSDP unit's parameters (fsdp.default_units, or the model's own)."""
    second_unit: int
    """The next largest unit's."""


@dataclass(frozen=True)
class NodeMemory:
    """One node's peak by category under a strategy at N nodes."""

    strategy: str
    nodes: int
    categories: dict[str, int]
    peak_bytes: int
    charged_bytes: int
    """What raysim's CPU budget sees: the peak less the parameters in the baseline."""

    def to_dict(self) -> dict:
        return asdict(self)


def _share(nbytes: int, nodes: int) -> int:
    return math.ceil(nbytes / nodes)


def node_memory(step: StepMemory, strategy: str, nodes: int) -> NodeMemory:
    """The node's categories and peak (module doc) for this strategy at this many nodes."""
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy: {strategy!r} is not one of {', '.join(STRATEGIES)}")
    if nodes < 1:
        raise ValueError(f"nodes: {nodes!r} must be at least 1")
    sharded = strategy == "fsdp" and nodes > 1
    params = _share(step.parameters, nodes) if sharded else step.parameters
    grads = _share(step.gradients, nodes) if sharded else step.gradients
    optimizer = step.optimizer if strategy == "ddp" else _share(step.optimizer, nodes)
    optimizer_step = _share(step.optimizer_step, nodes) if sharded else step.optimizer_step
    if nodes == 1:
        communication = 0
    elif strategy == "fsdp":
        communication = 2 * step.largest_unit + step.second_unit
    else:
        communication = _share(step.parameters, nodes) if strategy == "zero" else 0
    categories = {
        "parameters": params, "buffers": step.buffers, "gradients": grads,
        "optimizer": optimizer, "optimizer_step": optimizer_step,
        "activations": step.activations, "communication": communication,
    }  # fmt: skip
    peak = sum(categories.values())
    return NodeMemory(strategy, nodes, categories, peak, peak - params)
