"""A data-parallel step on a real cluster, from one GPU's step and the model's gradient buckets.

Weak scaling: every GPU trains `batch_per_gpu` samples per step and computes as fast as
the one GPU whose step (`step_s`: forward, backward and optimizer, no communication) is
given. Without overlap the step is compute + every bucket's all-reduce back to back. With
overlap (what DDP does) backward is the last `backward_share` of the step's compute; bucket
k may start its all-reduce once `ready_fraction[k]` of backward is done, buckets go one
at a time in DDP's order, each when it is ready and the previous one is done, and the
optimizer waits for the last. An all-reduce running beside backward slows it: backward
runs 1/(1 + contention) as fast while the link is busy, which also makes later buckets
ready later. So compute ≤ step ≤ (1 + contention) × compute + all buckets.

The contention depends on how the bytes move between machines (CONTENTION, by the
network link's transport): over RDMA (InfiniBand, RoCE; and NVLink/PCIe inside one
machine) the NIC's DMA moves them and backward loses only the communication kernels'
and copies' share of the GPU and its PCIe; over TCP the host's kernel copies every byte
through socket buffers, which takes the CPU threads that feed the GPU (Horovod's 2017
table shows it: VGG-16 on the same 16 GPUs trains 1787 img/s over RDMA, 1309 over TCP).

A synchronous step waits for the slowest GPU: each GPU's compute varies from step to step
(STRAGGLER_SPREAD, its standard deviation over its mean), so N GPUs compute in the expected
slowest of N, not in one GPU's mean (slowest_of).

What it cannot express: a persistently slow GPU or machine, congestion from other jobs,
gradient compression's compute, and input pipelines that stop keeping up.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from statistics import NormalDist

from raysim.errors import ConfigError
from raysim.projection.collectives import Topology, allreduce_cost
from raysim.projection.links import RDMA, TCP

BACKWARD_TO_FORWARD = 2.0
"""Backward costs about twice the forward (the gradients of the input and of the weights):
the one assumption wherever backward's share is not measured (the FLOP profile, a run
without backward timings, the flat model, a straggler's sleep)."""


def assumed_backward_share() -> float:
    """Backward's share of forward + backward under BACKWARD_TO_FORWARD (2/3)."""
    return BACKWARD_TO_FORWARD / (1 + BACKWARD_TO_FORWARD)


CONTENTION = {TCP: 0.519, RDMA: 0.216}
"""How much an all-reduce beside backward slows it, by the network's transport: backward
runs 1/(1 + this) as fast while the link is busy (one machine alone: RDMA's, its copies
are DMA). Fitted by least squares on every published point (benchmarks/bench_projection.py,
which reports each point's error with the constants refitted without its series)."""


def contention_for(topology: Topology) -> float:
    """The contention of `topology`'s all-reduces: its network's transport, or RDMA's when
    one machine's GPUs talk over NVLink or PCIe alone."""
    return CONTENTION[RDMA if topology.nodes == 1 else topology.network.transport]


TORCH_DDP_OVERHEAD_S_PER_GB = 0.0021
"""PyTorch DDP's exposed cost per step beyond the all-reduces, per GB of gradients (bucket
copies, hooks, the kernels' contention with backward). Fitted with CONTENTION on every
published point by benchmarks/bench_projection.py."""


STRAGGLER_SPREAD = 0.0473
"""One GPU's step-to-step variation of its compute (standard deviation over the mean), as
seen by a synchronous step that waits for the slowest GPU: the data-parallel step's
synchronization cost (Chen et al., "Revisiting Distributed Synchronous SGD", 2016: the
step is set by the slowest worker). Fitted with CONTENTION on every published point."""


def slowest_of(gpus: int, spread: float = STRAGGLER_SPREAD) -> float:
    """The expected compute of the slowest of `gpus` GPUs over one GPU's: 1 + spread ×
    E[max of `gpus` standard normals], by Blom's approximation Φ⁻¹((n − 0.375)/(n + 0.25))
    (within 1 % from 8 GPUs up, 4 % at 2; exactly 1 for one GPU)."""
    if gpus <= 1:
        return 1.0
    return 1 + spread * NormalDist().inv_cdf((gpus - 0.375) / (gpus + 0.25))


@dataclass(frozen=True)
class Workload:
    """What one GPU does per step, and where each input came from."""

    step_s: float
    batch_per_gpu: int
    buckets_bytes: tuple[int, ...]
    """DDP's gradient buckets in all-reduce order (bytes on the wire)."""
    ready_fraction: tuple[float, ...]
    """Per bucket: the share of backward done when DDP hands it over."""
    backward_share: float
    step_source: str
    readiness_source: str
    sync_overhead_s: float = 0.0
    """The data-parallel framework's own exposed cost per step with peers, beyond the
    all-reduces (see TORCH_DDP_OVERHEAD_S_PER_GB)."""

    def problems(self) -> list[str]:
        problems = []
        if not self.step_s > 0:
            problems.append(f"--step-time-ms: {self.step_s * 1e3!r} must be > 0 ms")
        if self.batch_per_gpu < 1:
            problems.append(f"--batch-size: {self.batch_per_gpu!r} must be at least 1")
        if any(b < 0 for b in self.buckets_bytes):
            problems.append("buckets: a bucket has a negative size")
        if len(self.ready_fraction) != len(self.buckets_bytes):
            problems.append("ready_fraction: one share per bucket is needed")
        if any(not 0 <= r <= 1 for r in self.ready_fraction):
            problems.append("ready_fraction: every share must be in [0, 1]")
        if not 0 < self.backward_share <= 1:
            problems.append(f"backward_share: {self.backward_share!r} must be in (0, 1]")
        return problems


@dataclass(frozen=True)
class ProjectedStep:
    """The predicted step at one cluster size (the cluster model's and the flat model's row)."""

    nodes: int
    gpus: int
    global_batch: int
    compute_s: float
    """One GPU's step alone: forward, backward and optimizer, no communication."""
    comm_s: float
    """Every bucket's all-reduce back to back."""
    step_s_no_overlap: float
    step_s_overlap: float
    samples_per_s: float
    """With overlap: gpus × batch / step_s_overlap."""
    samples_per_s_no_overlap: float
    efficiency: float
    """samples_per_s over gpus × what one GPU alone trains per second (batch / compute_s),
    i.e. compute_s / step_s_overlap: 1.0 is linear scaling from one GPU alone."""
    efficiency_no_overlap: float
    """The same with every all-reduce after backward: compute_s / step_s_no_overlap."""
    algorithm: str
    """The all-reduce algorithm of the largest bucket (nccl's choice by size); 'none' alone."""


def projected_step(
    gpus: int,
    nodes: int,
    batch: int,
    compute_s: float,
    comm_s: float,
    step_s: tuple[float, float],
    algorithm: str,
) -> ProjectedStep:
    """The row for `gpus` GPUs training `batch` each, step_s = (overlapped, not overlapped)."""
    overlap, no_overlap = step_s
    samples = gpus * batch
    linear = samples / compute_s
    return ProjectedStep(
        nodes=nodes, gpus=gpus, global_batch=samples, compute_s=compute_s, comm_s=comm_s,
        step_s_no_overlap=no_overlap, step_s_overlap=overlap,
        samples_per_s=samples / overlap, samples_per_s_no_overlap=samples / no_overlap,
        efficiency=samples / overlap / linear, efficiency_no_overlap=samples / no_overlap / linear,
        algorithm=algorithm,
    )  # fmt: skip


def compute_done_at(
    work_s: float, start: float, busy: Sequence[tuple[float, float]], contention: float
) -> float:
    """When `work_s` seconds of compute begun at `start` are done, compute running
    1/(1 + contention) as fast inside the link's busy intervals (in time order)."""
    now, left = start, work_s
    for busy_start, busy_end in busy:
        if busy_end <= now:
            continue
        if busy_start > now:  # the link is free until busy_start
            if left <= busy_start - now:
                return now + left
            left -= busy_start - now
            now = busy_start
        slowed = (busy_end - now) / (1 + contention)
        if left <= slowed:
            return now + left * (1 + contention)
        left -= slowed
        now = busy_end
    return now + left


def overlapped_step_seconds(
    compute_s: float,
    bucket_comm_s: Sequence[float],
    backward_share: float,
    ready: Sequence[float],
    contention: float = 0.0,
) -> float:
    """Step time when bucket k's all-reduce may start at ready[k] (share of backward done),
    backward slowed by `contention` while an all-reduce runs beside it."""
    backward_start = compute_s * (1 - backward_share)
    backward_s = compute_s * backward_share
    busy: list[tuple[float, float]] = []
    link_free = 0.0
    for comm, share_done in zip(bucket_comm_s, ready, strict=True):
        ready_at = compute_done_at(share_done * backward_s, backward_start, busy, contention)
        start = max(ready_at, link_free)
        link_free = start + comm
        busy.append((start, link_free))
    return max(compute_done_at(backward_s, backward_start, busy, contention), link_free)


@functools.lru_cache(maxsize=1024)
def bucket_costs(
    buckets_bytes: tuple[int, ...], topology: Topology
) -> tuple[tuple[float, str], ...]:
    """Each bucket's all-reduce (seconds, algorithm). Cached: a fit of the projection's
    constants projects the same points' steps hundreds of thousands of times."""
    return tuple(allreduce_cost(b, topology) for b in buckets_bytes)


def project_step(
    work: Workload,
    topology: Topology,
    contention: float | None = None,
    spread: float = STRAGGLER_SPREAD,
) -> ProjectedStep:
    """The step on `topology`; `contention` None: the transport's (contention_for); its
    GPUs compute as the slowest of them (slowest_of with `spread`)."""
    problems = work.problems() + topology.problems()
    if problems:
        raise ConfigError(problems)
    costs = bucket_costs(tuple(work.buckets_bytes), topology)
    per_bucket = [seconds for seconds, _ in costs]
    comm = sum(per_bucket)
    largest = max(range(len(costs)), key=lambda k: work.buckets_bytes[k], default=None)
    algorithm = costs[largest][1] if largest is not None else "none"
    overhead = work.sync_overhead_s if topology.gpus > 1 else 0.0
    compute = work.step_s * slowest_of(topology.gpus, spread)
    no_overlap = compute + comm + overhead
    if contention is None:
        contention = contention_for(topology)
    overlap = overhead + overlapped_step_seconds(
        compute, per_bucket, work.backward_share, work.ready_fraction, contention
    )
    return projected_step(
        topology.gpus, topology.nodes, work.batch_per_gpu, work.step_s, comm,
        (overlap, no_overlap), algorithm,
    )  # fmt: skip


def project_scaling(
    work: Workload, topology: Topology, nodes: Sequence[int]
) -> list[ProjectedStep]:
    """One step per machine count, the rest of the topology as given."""
    return scaled(project_step, work, topology, nodes)


def scaled(project: Callable, work, topology: Topology, nodes: Sequence[int]) -> list:
    """project(work, topology) at each machine count, the rest of the topology as given
    (DDP's step or FSDP's)."""
    if not nodes or any(n < 1 for n in nodes):
        raise ConfigError([f"--nodes: {list(nodes)!r} must be machine counts >= 1, e.g. 1,2,4"])
    return [project(work, replace(topology, nodes=n)) for n in nodes]


def bytes_ready_fraction(bucket_bytes: Sequence[int]) -> tuple[float, ...]:
    """Readiness when nothing better is known: the share of backward done when each bucket
    is ready is its cumulative share of the gradient bytes."""
    total = sum(bucket_bytes)
    if total == 0:
        return tuple(1.0 for _ in bucket_bytes)
    running, shares = 0, []
    for size in bucket_bytes:
        running += size
        shares.append(running / total)
    return tuple(shares)


def regrid_ready_fraction(
    measured_bytes: Sequence[int], measured_ready: Sequence[float], target_bytes: Sequence[int]
) -> tuple[float, ...]:
    """Carry a measured readiness curve (buckets of one layout, same gradient order) over to
    another layout: a target bucket is ready when the measured bucket holding its last byte
    is."""
    ends, running = [], 0
    for size in measured_bytes:
        running += size
        ends.append(running)
    shares, running = [], 0
    for size in target_bytes:
        running += size
        k = next((i for i, end in enumerate(ends) if end >= running), len(ends) - 1)
        shares.append(float(measured_ready[k]))
    return tuple(shares)
