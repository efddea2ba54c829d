"""Each simulated node's memory partition: enforce it, measure it, explain a breach.

CUDA: `torch.cuda.set_per_process_memory_fraction` caps PyTorch's caching
allocator (the CUDA context and NCCL/gloo buffers are outside the cap).
CPU: the budget (memory_fraction × device_memory_gb) is enforced on real memory
with RLIMIT_DATA set to the process's data segment after imports and setup plus
the budget, so the allocation that crosses it fails inside torch. The baseline
(Python, torch, Ray's worker, the model) is not charged to the budget, because a
Ray worker alone holds ~2.3 GB of virtual data space before it trains anything.
The limit is the whole process's: at it, an allocation in one of gloo's or Ray's
threads can fail too, which ends the process instead of raising the clear error,
so a budget below the model's training state (which could only fail) is refused
before Ray starts (state_floor_problem).
"""

from __future__ import annotations

import math
import os
import resource
from dataclasses import dataclass

OOM_MARKERS = (
    "DefaultCPUAllocator: can't allocate memory",
    "could not create a primitive",  # oneDNN, when its workspace cannot be allocated
    "CUDA out of memory",
    "out of memory",
)
MB = 1e6
ADAM_MOMENTS = 2
"""Adam keeps two running moments per parameter (raysim.model.adam)."""
FP32_BYTES = 4


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

    peak_bytes: int = 0
    """Most memory above the baseline seen at a step boundary this epoch."""

    def used_bytes(self) -> int:
        """Memory charged to the budget now (CUDA: allocated by PyTorch; CPU: data growth)."""
        if self.device_kind == "cuda":
            import torch

            return torch.cuda.memory_allocated()
        return max(data_segment_bytes() - self.baseline_data_bytes, 0)

    def sample(self) -> None:
        self.peak_bytes = max(self.peak_bytes, self.used_bytes())

    def take_epoch(self) -> dict[str, int]:
        """This epoch's figures; the peak starts again for the next epoch."""
        self.sample()
        figures = {
            "memory_budget_bytes": self.budget_bytes,
            "memory_peak_bytes": self.peak_bytes,
            "memory_headroom_bytes": self.budget_bytes - self.peak_bytes,
        }
        self.peak_bytes = 0
        return figures

    def explain(self, error: BaseException) -> SimulatedOutOfMemoryError:
        if self.device_kind == "cpu":
            release_cpu_budget()  # let the error path allocate
        grown = max(self.peak_bytes, self.used_bytes())
        return SimulatedOutOfMemoryError(
            f"node-{self.rank} (rank {self.rank}) ran out of its memory partition: budget "
            f"{self.budget_bytes / MB:.0f} MB (memory_fraction {self.memory_fraction:.2f} × "
            f"{self.device_memory_bytes / MB:.0f} MB device), training memory reached "
            f"{grown / MB:.0f} MB above the {self.baseline_data_bytes / MB:.0f} MB "
            f"baseline when an allocation failed ({str(error).splitlines()[0][:160]}). "
            "Fix: a smaller batch_size, a larger memory_fraction (fewer nodes then fit), "
            "fewer nodes, or mixed precision"
        )


def training_state_bytes(parameters: int) -> int:
    """fp32 gradients and Adam's moments: held from the first step on, whatever the batch."""
    return parameters * FP32_BYTES * (1 + ADAM_MOMENTS)


def state_floor_problem(
    parameters: int, budget_bytes: int, memory_fraction: float, device_memory_bytes: int
) -> str | None:
    """Why a budget cannot hold even the model's training state, or None.

    Caught before Ray starts: such a run could only fail in its first step, and the
    allocation that crosses a nearly full budget may be one of gloo's or Ray's own
    threads' (which kills the worker) rather than the training thread's clear error."""
    floor = training_state_bytes(parameters)
    if budget_bytes >= floor:
        return None
    fraction = math.ceil(floor / device_memory_bytes * 100) / 100
    return (
        f"memory_fraction {memory_fraction:g} × {device_memory_bytes / MB:.0f} MB device gives "
        f"each node {budget_bytes / MB:.0f} MB, but the model's gradients and Adam's "
        f"{ADAM_MOMENTS} moments alone take {floor / MB:.0f} MB "
        f"({parameters / 1e6:.1f}M fp32 parameters × {1 + ADAM_MOMENTS}), before any "
        f"activations. Fix: memory_fraction ≥ {fraction:g} (fewer nodes then fit on the "
        "device), a larger device_memory_gb, or enforce_memory: false"
    )


def process_rss_bytes() -> int:
    """Resident set size now, from /proc where it exists (Linux), else the peak."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return peak_rss_bytes()


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def data_segment_bytes() -> int:
    """VmData: what RLIMIT_DATA counts (heap and private writable mappings)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmData:"):
                return int(line.split()[1]) * 1024
    raise OSError("no VmData in /proc/self/status")


def enforce_cpu_budget(
    rank: int, budget_bytes: int, memory_fraction: float, device_memory_bytes: int
) -> MemoryGuard:
    """Cap this process's data segment at its current size plus the budget."""
    baseline = data_segment_bytes()
    _, hard = resource.getrlimit(resource.RLIMIT_DATA)
    limit = baseline + budget_bytes
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_DATA, (limit, hard))
    return MemoryGuard(rank, budget_bytes, memory_fraction, device_memory_bytes, baseline, "cpu")


def release_cpu_budget() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_DATA)
    resource.setrlimit(resource.RLIMIT_DATA, (hard, hard))


def is_out_of_memory(error: BaseException) -> bool:
    if isinstance(error, MemoryError):
        return True
    text = str(error)
    return any(marker in text for marker in OOM_MARKERS)
