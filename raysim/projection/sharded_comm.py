"""What the sharded strategies' collectives cost on a modelled link: FSDP's all-gather of
each unit's parameters and reduce-scatter of its gradients, ZeRO's gather of the updated
parameters after its step.

The alpha-beta model of raysim.projection.comm_model, for one half of a ring all-reduce:
a collective whose whole (gathered, or to-be-scattered) tensor is n bytes over p nodes
with per-message latency α and bandwidth B costs (p−1)·α + (p−1)/p · n/B. A tree link
gathers level by level: ⌈log2 p⌉·α + ⌈log2 p⌉ · n/B. Pure functions: the emulation's
collectives, the estimate and the tests share them.
"""

from __future__ import annotations

from raysim.projection.comm_model import AlphaBetaLink, allreduce_seconds


def gather_seconds(nbytes: int, nodes: int, spec: AlphaBetaLink) -> float:
    """One all-gather (or reduce-scatter) whose whole tensor is nbytes, over nodes: half of
    an all-reduce of the same bytes, ring or tree alike."""
    return allreduce_seconds(nbytes, nodes, spec) / 2


def fsdp_step_bytes(unit_bytes: list[int]) -> dict[str, int]:
    """Bytes each collective kind moves per FSDP step (whole tensors): every unit's
    parameters gathered for forward and again for backward, its gradients scattered once."""
    total = sum(unit_bytes)
    return {"all_gather": 2 * total, "reduce_scatter": total}
