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
  them, gradient_as_bucket_view), ZeRO's flat message of one owner's parameters.

Under ddp and zero the peak adds them all. FSDP's is the most it holds at one moment of
the backward (fsdp_backward): at each unit's backward the activations of the units before
it are still alive, the unit's own are freed as its unsharded gradients are made (so the
larger of the two counts), its parameters are gathered and the next unit's prefetched, and
the root's parameters stay gathered with their unsharded gradients throughout (FSDP2 does
not reshard its root after forward); or the forward's end, if more. What raysim's CPU
budget charges is the peak less
the parameters already resident when the node's baseline is measured (after the strategy's
wrapper); its measure, the resident high-water mark within steps, also holds what the
allocator keeps of freed tensors and the step's temporaries, so it sees more (README,
"Sharded training").
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

STRATEGIES = ("ddp", "zero", "fsdp")


@dataclass(frozen=True)
class UnitMemory:
    """One FSDP unit of the probed step (bytes)."""

    parameters: int
    activations_before: int
    """Activations alive as its forward starts: those of everything the forward ran before."""
    activations_own: int
    """What its forward added to them."""


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
    units: tuple[UnitMemory, ...] = ()
    """FSDP's default units (fsdp.default_units) in the order the forward runs them."""
    root_unit: int = 0
    """The parameters no unit holds, FSDP's root unit's (bytes)."""


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
    activations = step.activations
    if nodes == 1:
        communication = 0
    elif strategy == "fsdp":
        activations, communication = fsdp_backward(step)
    else:
        communication = _share(step.parameters, nodes) if strategy == "zero" else 0
    categories = {
        "parameters": params, "buffers": step.buffers, "gradients": grads,
        "optimizer": optimizer, "optimizer_step": optimizer_step,
        "activations": activations, "communication": communication,
    }  # fmt: skip
    peak = sum(categories.values())
    return NodeMemory(strategy, nodes, categories, peak, peak - params)


def fsdp_backward(step: StepMemory) -> tuple[int, int]:
    """(activations, gathered parameters and unsharded gradients) at the moment FSDP holds
    most of both together (module doc); fp32 gradients, as large as their parameters."""
    root = 2 * step.root_unit
    moments = [(step.activations, root)]  # the forward's end
    for k, unit in enumerate(step.units):
        prefetched = step.units[k - 1].parameters if k else 0
        gathered = unit.parameters + prefetched + root
        if unit.activations_own >= unit.parameters:  # as the unit's backward starts
            moments.append((unit.activations_before + unit.activations_own, gathered))
        else:  # as it ends
            moments.append((unit.activations_before, gathered + unit.parameters))
    return max(moments, key=sum)
