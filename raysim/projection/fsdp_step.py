"""An FSDP step on a real cluster: each unit's parameters all-gathered for forward and again
for backward, its gradients reduce-scattered, each collective beside the compute it feeds.

FSDP2 (torch.distributed.fsdp.fully_shard; Zhao et al., "PyTorch FSDP", VLDB 2023, §3.3-4
on backward prefetch and the rate limiter) runs, per step, with units in forward order:

- forward: unit k's all-gather is issued when unit k−1 starts computing (the implicit
  forward prefetch: at most two units' parameters gathered at once) and runs once the link
  is free; unit k computes once its parameters are gathered and unit k−1 is done.
- backward, units in reverse: a unit that freed its parameters after forward (every unit
  but the root, which keeps them: torch's `_fsdp_state` "for the root, do not reshard after
  forward") is gathered again, issued when the unit after it starts its backward (explicit
  backward prefetch, FSDP2's default); its reduce-scatter is issued after its backward.
- one link: the collectives run one at a time, in the order issued (all-gathers and
  reduce-scatters share the machine's NICs); each is a ring priced by
  raysim.projection.collectives.gather_seconds.
- compute beside a busy link runs 1/(1 + contention) as fast, the contention of DDP's
  all-reduces (raysim.projection.step_model.CONTENTION, fitted on DDP points only).
- the GPUs compute as the slowest of them (step_model.slowest_of, DDP's fitted spread).
- the rest of the step (the optimizer on the GPU's shard, the loss) is counted with
  forward: the step ends when the last unit's backward and the last reduce-scatter are done.

What it cannot express: gradient accumulation without resharding, HSDP's replicas, CPU
offload, and the memory-bound copies into and out of the collectives' buffers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from raysim.errors import ConfigError
from raysim.projection.collectives import Topology, gather_seconds
from raysim.projection.step_model import (
    ProjectedStep,
    compute_done_at,
    contention_for,
    projected_step,
    scaled,
    slowest_of,
)


@dataclass(frozen=True)
class FsdpUnit:
    """One fully_shard unit: its parameters and its share of the model's compute."""

    name: str
    params: int
    compute_share: float
    """Its share of forward's FLOPs (and so of backward's)."""
    regather: bool = True
    """Gathered again for backward (False: the root, which keeps its parameters)."""
    gather_bytes_per_param: float | None = None
    """This unit's own all-gather dtype where it differs from the workload's (float8
    all-gather of its linear layers: 1)."""


@dataclass(frozen=True)
class FsdpWorkload:
    """What one GPU does per step under FSDP, and where each input came from."""

    step_s: float
    """One GPU's compute per step alone (forward, backward, optimizer; no collectives)."""
    batch_per_gpu: int
    units: tuple[FsdpUnit, ...]
    """In forward order."""
    backward_share: float
    step_source: str
    units_source: str
    gather_bytes_per_param: int = 4
    """What a parameter weighs in the all-gather: 4 (fp32), 2 (bf16 mixed precision)."""
    reduce_bytes_per_param: int = 4
    """What a gradient weighs in the reduce-scatter (FSDP2 reduces in fp32 unless told)."""

    def problems(self) -> list[str]:
        problems = []
        if not self.step_s > 0:
            problems.append(f"--step-time-ms: {self.step_s * 1e3!r} must be > 0 ms")
        if self.batch_per_gpu < 1:
            problems.append(f"--batch-size: {self.batch_per_gpu!r} must be at least 1")
        if not self.units:
            problems.append("units: an FSDP model has at least one unit (the root)")
        if any(u.params < 0 or u.compute_share < 0 for u in self.units):
            problems.append("units: a unit has negative parameters or compute")
        if abs(sum(u.compute_share for u in self.units) - 1) > 1e-6:
            problems.append("units: the compute shares must add up to 1")
        if not 0 < self.backward_share <= 1:
            problems.append(f"backward_share: {self.backward_share!r} must be in (0, 1]")
        return problems


class _Link:
    """The one link: collectives one at a time in the order issued, and when it was busy."""

    def __init__(self) -> None:
        self.free_at = 0.0
        self.busy: list[tuple[float, float]] = []
        self.total_s = 0.0

    def issue(self, at: float, seconds: float) -> float:
        """A collective issued at `at`: when it is done."""
        start = max(at, self.free_at)
        self.free_at = start + seconds
        self.busy.append((start, self.free_at))
        self.total_s += seconds
        return self.free_at


def fsdp_step_seconds(
    work: FsdpWorkload, topology: Topology, contention: float
) -> tuple[float, float]:
    """(the overlapped step, every collective back to back) on `topology`."""
    units = work.units
    gather = [
        gather_seconds(int(u.params * (u.gather_bytes_per_param or work.gather_bytes_per_param)),
                       topology)
        for u in units
    ]  # fmt: skip
    scatter = [gather_seconds(u.params * work.reduce_bytes_per_param, topology) for u in units]
    forward_s = work.step_s * (1 - work.backward_share)
    backward_s = work.step_s * work.backward_share
    link = _Link()
    gathered = [0.0] * len(units)
    gathered[0] = link.issue(0.0, gather[0])
    now = 0.0
    for k, unit in enumerate(units):
        start = max(now, gathered[k])
        if k + 1 < len(units):
            gathered[k + 1] = link.issue(start, gather[k + 1])
        now = compute_done_at(forward_s * unit.compute_share, start, link.busy, contention)
    last = len(units) - 1
    gathered[last] = link.issue(now, gather[last]) if units[last].regather else now
    for k in reversed(range(len(units))):
        start = max(now, gathered[k])
        if k > 0:
            gathered[k - 1] = link.issue(start, gather[k - 1]) if units[k - 1].regather else start
        now = compute_done_at(backward_s * units[k].compute_share, start, link.busy, contention)
        link.issue(now, scatter[k])
    return max(now, link.free_at), link.total_s


def slowest_fsdp_step_seconds(
    work: FsdpWorkload, topology: Topology, contention: float
) -> tuple[float, float, float]:
    """fsdp_step_seconds with the GPUs computing as the slowest of them (slowest_of): (the
    overlapped step, every collective back to back, that compute)."""
    compute = work.step_s * slowest_of(topology.gpus)
    return (*fsdp_step_seconds(replace(work, step_s=compute), topology, contention), compute)


def project_fsdp_step(
    work: FsdpWorkload, topology: Topology, contention: float | None = None
) -> ProjectedStep:
    """The FSDP step on `topology`; `contention` None: the transport's (contention_for)."""
    problems = work.problems() + topology.problems()
    if problems:
        raise ConfigError(problems)
    if contention is None:
        contention = contention_for(topology)
    overlap, comm, compute = slowest_fsdp_step_seconds(work, topology, contention)
    return projected_step(
        topology.gpus, topology.nodes, work.batch_per_gpu, work.step_s, comm,
        (overlap, compute + comm), "ring" if topology.gpus > 1 else "none",
    )  # fmt: skip


def project_fsdp_scaling(
    work: FsdpWorkload, topology: Topology, nodes: Sequence[int]
) -> list[ProjectedStep]:
    """One FSDP step per machine count, the rest of the topology as given."""
    return scaled(project_fsdp_step, work, topology, nodes)


def compute_for_step(
    work: FsdpWorkload, topology: Topology, measured_step_s: float, contention: float
) -> float:
    """The compute per step whose projected step on `topology` is `measured_step_s`: a step
    measured on some GPUs (one machine) carried to the compute it implies (bisection; the
    projected step grows with the compute)."""
    low, high = 0.0, measured_step_s
    if slowest_fsdp_step_seconds(replace(work, step_s=1e-9), topology, contention)[0] > (
        measured_step_s
    ):
        raise ConfigError([
            f"step: {measured_step_s * 1e3:.1f} ms is shorter than the collectives alone on "
            "this topology; check the step, the model and the links"
        ])  # fmt: skip
    for _ in range(60):
        middle = (low + high) / 2
        step = slowest_fsdp_step_seconds(replace(work, step_s=middle), topology, contention)[0]
        low, high = (middle, high) if step < measured_step_s else (low, middle)
    return (low + high) / 2
