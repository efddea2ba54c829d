"""Each simulated node's memory partition: enforce it, measure it, explain a breach.

CUDA: `torch.cuda.set_per_process_memory_fraction` caps PyTorch's caching
allocator (the CUDA context and NCCL/gloo buffers are outside the cap).
CPU: the budget (memory_fraction × device_memory_gb) is enforced on real memory
with RLIMIT_DATA set to the process's data segment after imports and setup plus
the budget, so the allocation that crosses it fails inside torch. The baseline
(Python, torch, Ray's worker, the model) is not charged to the budget, because a
Ray worker alone holds ~2.4 GB of virtual data space before it trains anything
(memory_baseline_bytes: 2413–2431 MB per node in README's main job).
The limit is the whole process's: at it, an allocation in one of gloo's, Ray's or
oneDNN's threads can fail too, which ends the process instead of raising the clear
error (seen in 2 of 4 runs at batch 384, 32 px, 268 MB). So a budget below the model's
training state (which could only fail) is refused before Ray starts
(raysim.plan.memory_floor), and a watch keeps the partition's use on disk, from which
the driver tells a process that died at the limit as having run out of it
(raysim.worker.memory_watch).

The node's peak is the most it held at once, as a device's allocator counts it (what its
live tensors take, not what it keeps cached): CUDA's allocator keeps its own peak; on the
CPU, the anonymous pages resident less what glibc holds free in its heaps (freed tensors
it keeps for reuse: 105 MB of a transformer's 193 MB on 4 nodes, seen), above the
baseline, sampled at step boundaries (the forward's end holds the activations) and at FSDP's
collectives (the backward's gathered units beside the activations still alive, a unit's
unsharded gradients), in the steps samples_memory picks, and at the epoch's end Linux's
resident high-water mark within steps (restarted each epoch) less what is free then,
which holds backward's transients that glibc returned (mapped alone). The node's own
buckets in shared memory count, not its peers' that it maps. The data segment the limit
is enforced on is no measure of it: it counts whole the stacks of threads started since
(8 MiB each, hardly resident), and glibc's free heap.
"""

from __future__ import annotations

import resource
from dataclasses import dataclass

from raysim.config.schema import ExperimentConfig
from raysim.failures import PARTITION_FIX, PARTITION_TEXT, partition_budget
from raysim.plan.resources import ResourcePlan
from raysim.procfs import (
    anonymous_and_data_bytes,
    anonymous_resident_bytes,
    anonymous_resident_high_water_bytes,
    data_segment_bytes,
    restart_resident_high_water,
)
from raysim.units import MB
from raysim.worker.glibc import free_heap_bytes

OOM_MARKERS = (
    "DefaultCPUAllocator: can't allocate memory",
    "could not create a primitive",  # oneDNN, when its workspace cannot be allocated
    "CUDA out of memory",
    "out of memory",
)


SAMPLED_FIRST = 4
"""The first steps after each report whose memory is sampled; then one in SAMPLED_EVERY."""
SAMPLED_EVERY = 16


def samples_memory(since_report: int, total: int) -> bool:
    """Whether the step (0-based, since the last report and in the node's life) samples
    memory. A sample is a /proc read and a walk of glibc's free lists: 6 µs alone, but
    0.1-0.3 ms inside a training step on a busy host (two ranks of a transformer on two
    cores, 2026-12-07), two or more a step: 2 % of a 33 ms step. Steps repeat what they
    hold, so the first of each epoch and one in SAMPLED_EVERY after see the peak; the
    epoch's high-water mark covers the steps between."""
    return since_report < SAMPLED_FIRST or total % SAMPLED_EVERY == 0


class SimulatedOutOfMemoryError(MemoryError):
    """A simulated node used more memory than its partition allows."""


@dataclass
class MemoryGuard:
    """The enforced budget of one simulated node and where it started."""

    rank: int
    budget_bytes: int
    memory_fraction: float
    device_memory_bytes: int
    baseline_data_bytes: int
    device_kind: str

    baseline_resident_bytes: int = 0
    """CPU: the anonymous pages resident when the guard started (procfs)."""
    baseline_free_bytes: int = 0
    """CPU: what glibc held free in its heaps then (part of those pages)."""
    high_water_kept: bool = True
    """The platform restarts its high-water mark at the guard's start and each epoch's end
    (a kernel that refuses it would give the process's whole life's, imports included)."""
    peak_bytes: int = 0
    """Most memory above the baseline this epoch, live as a device's allocator counts it
    (on the CPU, resident less glibc's free heap): sampled at step boundaries, and at the
    epoch's end from the high-water mark within steps."""
    limit_peak_bytes: int = 0
    """CPU: the most the enforced limit's measure (used_bytes) read at step boundaries this
    epoch: what a batch must stay under to run again, beside what the node holds."""
    enforced: bool = False
    """The CPU budget is the process's RLIMIT_DATA."""
    shared_bytes: int = 0
    """This node's gradient buckets in shared memory (the host all-reduce): outside the data
    segment, so charged here, and taken off the data limit."""

    def used_bytes(self) -> int:
        """Memory charged to the budget now (CUDA: allocated by PyTorch; CPU: data growth
        and the node's own buckets in shared memory)."""
        if self.device_kind == "cuda":
            import torch

            return torch.cuda.memory_allocated()
        return self._above(data_segment_bytes(), self.baseline_data_bytes)

    def _above(self, now: int, baseline: int) -> int:
        """CPU: growth past a baseline, and the node's own buckets in shared memory."""
        return max(now - baseline, 0) + self.shared_bytes

    def hold_shared(self, total_bytes: int) -> None:
        """The node's buckets in shared memory are now total_bytes: the budget covers them
        as it covered them in the data segment they left."""
        change = total_bytes - self.shared_bytes
        self.shared_bytes = total_bytes
        if self.enforced:
            soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
            if soft != resource.RLIM_INFINITY:
                resource.setrlimit(resource.RLIMIT_DATA, (max(soft - change, 0), hard))

    def sample(self) -> None:
        """Note what the node holds now, as a device would count it (CUDA: allocated by
        PyTorch; CPU: anonymous pages resident less glibc's free heap, above the baseline,
        and the node's own buckets in shared memory), and on the CPU what the enforced limit
        counts: the data segment."""
        if self.device_kind == "cuda":
            self.peak_bytes = max(self.peak_bytes, self.used_bytes())
            return
        resident, data = anonymous_and_data_bytes()  # one read for both
        self.peak_bytes = max(self.peak_bytes, self._in_use(resident))
        self.limit_peak_bytes = max(
            self.limit_peak_bytes, self._above(data, self.baseline_data_bytes)
        )

    def _in_use(self, resident: int) -> int:
        """CPU: of these anonymous resident bytes, what is not glibc's free heap, above the
        baseline's, with the node's own buckets."""
        baseline = self.baseline_resident_bytes - self.baseline_free_bytes
        return self._above(resident - free_heap_bytes(), baseline)

    def high_water_bytes(self) -> int:
        """The most charged at once since the high-water mark was last started, within steps
        too (CUDA: PyTorch's allocator; CPU: the anonymous resident high-water mark less
        glibc's free heap now, with the node's own buckets in shared memory, not the peers'
        it maps); 0 where the platform does not keep one."""
        if self.device_kind == "cuda":
            import torch

            return torch.cuda.max_memory_allocated()
        high_water = anonymous_resident_high_water_bytes() if self.high_water_kept else None
        if high_water is None:
            return 0
        return self._in_use(high_water)

    def take_epoch(self) -> dict[str, int]:
        """This epoch's figures; the peak starts again for the next epoch."""
        self.sample()
        self.peak_bytes = max(self.peak_bytes, self.high_water_bytes())
        figures = {
            "memory_budget_bytes": self.budget_bytes,
            "memory_peak_bytes": self.peak_bytes,
            "memory_headroom_bytes": self.budget_bytes - self.peak_bytes,
        }
        if self.device_kind == "cpu":  # not charged to the budget, but the host holds it
            figures["memory_baseline_bytes"] = self.baseline_data_bytes
            figures["memory_limit_peak_bytes"] = max(self.limit_peak_bytes, self.peak_bytes)
        self.peak_bytes = self.limit_peak_bytes = 0
        if self.device_kind == "cpu":  # CUDA's: the report restarts it after reading its own
            self.high_water_kept = restart_resident_high_water()
        return figures

    def explain(self, error: BaseException) -> SimulatedOutOfMemoryError:
        if self.device_kind == "cpu":
            release_cpu_budget()  # let the error path allocate
        grown = max(self.peak_bytes, self.used_bytes())
        return SimulatedOutOfMemoryError(
            f"node-{self.rank} (rank {self.rank}) {PARTITION_TEXT}: "
            f"{partition_budget(self.budget_bytes, self.memory_fraction, self.device_memory_bytes)}"
            f", training memory reached "
            f"{grown / MB:.0f} MB above the {self.baseline_data_bytes / MB:.0f} MB "
            f"baseline when an allocation failed ({str(error).splitlines()[0][:160]}). "
            + PARTITION_FIX
        )


def restart_high_water(device_kind: str) -> bool:
    """Whether the high-water mark now starts again from what is held."""
    if device_kind == "cuda":
        import torch

        torch.cuda.reset_peak_memory_stats()
        return True
    return restart_resident_high_water()


def enforce_cpu_budget(
    rank: int, budget_bytes: int, memory_fraction: float, device_memory_bytes: int
) -> MemoryGuard:
    """Cap this process's data segment at its current size plus the budget."""
    guard = _started_guard(rank, budget_bytes, memory_fraction, device_memory_bytes, "cpu")
    _, hard = resource.getrlimit(resource.RLIMIT_DATA)
    limit = guard.baseline_data_bytes + budget_bytes
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_DATA, (limit, hard))
    guard.enforced = True
    return guard


def _started_guard(
    rank: int, budget_bytes: int, memory_fraction: float, device_memory_bytes: int, kind: str
) -> MemoryGuard:
    """A guard whose baselines and high-water mark start now."""
    kept = restart_high_water(kind)
    return MemoryGuard(
        rank, budget_bytes, memory_fraction, device_memory_bytes,
        baseline_data_bytes=0 if kind == "cuda" else data_segment_bytes(),
        device_kind=kind,
        baseline_resident_bytes=0 if kind == "cuda" else anonymous_resident_bytes(),
        baseline_free_bytes=0 if kind == "cuda" else free_heap_bytes(),
        high_water_kept=kept,
    )  # fmt: skip


def release_cpu_budget() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_DATA)
    resource.setrlimit(resource.RLIMIT_DATA, (hard, hard))


def is_out_of_memory(error: BaseException) -> bool:
    if isinstance(error, MemoryError):
        return True
    text = str(error)
    return any(marker in text for marker in OOM_MARKERS)


def memory_guard(cfg: ExperimentConfig, plan: ResourcePlan, rank: int) -> MemoryGuard:
    """Call after imports, data and model setup: the budget covers training memory only."""
    if plan.device_kind == "cpu" and cfg.enforce_memory:
        return enforce_cpu_budget(
            rank, plan.memory_budget_bytes, plan.memory_fraction, plan.device_memory_bytes
        )
    return _started_guard(
        rank, plan.memory_budget_bytes, plan.memory_fraction, plan.device_memory_bytes,
        plan.device_kind,
    )  # fmt: skip
