"""How a failed run is told: each node's error, causes before symptoms."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum

from raysim.units import MB, gib


class RunFailedError(RuntimeError):
    """Training failed on one or more simulated nodes; the message leads with their errors."""


PARTITION_TEXT = "ran out of its memory partition"
PARTITION_FIX = (
    "Fix: a smaller batch_size, a larger memory_fraction (fewer nodes then fit), "
    "fewer nodes, or mixed precision"
)
AT_LIMIT = 0.9
"""A process that died with this share of its CPU partition in use died at the limit: the
watch samples every 20 ms, and an allocation that fails leaves the rest of the limit to the
other threads, so one of them failed only if little was left."""

PROCESS_DEATH_MARKERS = ("health check failed", "actor died", "died unexpectedly")
PEER_LOSS_MARKERS = ("Connection reset by peer", "Connection closed by peer", "Broken pipe")


class Cause(Enum):
    """What a node's failure message says happened, in the order causes come before
    symptoms: a raised error, then a process that died, then an all-reduce whose peer
    was gone."""

    RAISED = 0
    PROCESS_DIED = 1
    PEER_LOST = 2


@dataclass(frozen=True)
class NodeMemory:
    """A node's training memory as its watch last wrote it (raysim.worker.memory_watch)."""

    used_bytes: int
    peak_bytes: int
    budget_bytes: int

    LINE_BYTES = 64

    def line(self) -> bytes:
        """One fixed-width line, rewritten in place: a reader never sees half of two."""
        text = f"{self.used_bytes} {self.peak_bytes} {self.budget_bytes}"
        return text.encode().ljust(self.LINE_BYTES - 1) + b"\n"

    @classmethod
    def parse(cls, text: str) -> NodeMemory | None:
        try:
            used, peak, budget = (int(field) for field in text.split())
        except ValueError:
            return None
        return cls(used, peak, budget)

    @property
    def at_limit(self) -> bool:
        return self.peak_bytes >= AT_LIMIT * self.budget_bytes


def partition_budget(budget_bytes: int, memory_fraction: float, device_memory_bytes: int) -> str:
    """A node's partition as both ways of running out of it state it."""
    return (
        f"budget {budget_bytes / MB:.0f} MB (memory_fraction {memory_fraction:.2f} × "
        f"{gib(device_memory_bytes)} device)"
    )


def died_at_limit(memory: NodeMemory, partition: str | None = None) -> str:
    """partition: the plan's partition_budget (None: the budget the watch wrote)."""
    budget = partition or f"budget {memory.budget_bytes / MB:.0f} MB"
    return (
        f"{PARTITION_TEXT}: {budget}, its process died holding {memory.peak_bytes / MB:.0f} MB, "
        f"so an allocation failed in a thread that cannot raise it (Ray's, gloo's, oneDNN's). "
        f"{PARTITION_FIX}"
    )


def failure_cause(message: str) -> Cause:
    if any(marker in message for marker in PEER_LOSS_MARKERS):
        return Cause.PEER_LOST
    if any(marker in message for marker in PROCESS_DEATH_MARKERS):
        return Cause.PROCESS_DIED
    return Cause.RAISED


def failure_message(
    error: Exception,
    memory: Mapping[int, NodeMemory] | None = None,
    partition: str | None = None,
) -> str:
    """Each node's failure, the likely cause first; symptoms in one line each (memory: what
    the nodes' memory watches last wrote, by rank; partition: their partition_budget)."""
    failures = getattr(error, "worker_failures", None)
    if not failures:
        return f"training failed: {error}"
    messages = {rank: str(err).strip() for rank, err in failures.items()}
    for rank, text in messages.items():
        seen = (memory or {}).get(rank)
        if failure_cause(text) is Cause.PROCESS_DIED and seen is not None and seen.at_limit:
            messages[rank] = f"node-{rank} (rank {rank}) {died_at_limit(seen, partition)}"
    order = sorted(messages, key=lambda rank: (failure_cause(messages[rank]).value, rank))
    parts = [f"training failed on {len(failures)} simulated node(s):"]
    for rank in order:
        text = messages[rank]
        cause = failure_cause(text)
        if cause is Cause.PROCESS_DIED:
            text = (
                "its worker process died (crash, kill or the kernel's OOM killer): "
                + (text.splitlines()[0])
            )
        elif cause is Cause.PEER_LOST:
            text = "lost its all-reduce peer: " + text.splitlines()[0][-160:]
        parts.append(f"--- node-{rank} (rank {rank}) ---\n{text}")
    return "\n".join(parts)
