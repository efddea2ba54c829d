"""How a failed run is told: each node's error, causes before symptoms."""

from __future__ import annotations

from enum import Enum


class RunFailedError(RuntimeError):
    """Training failed on one or more simulated nodes; the message leads with their errors."""


PROCESS_DEATH_MARKERS = ("health check failed", "actor died", "died unexpectedly")
PEER_LOSS_MARKERS = ("Connection reset by peer", "Connection closed by peer", "Broken pipe")


class Cause(Enum):
    """What a node's failure message says happened, in the order causes come before
    symptoms: a raised error, then a process that died, then an all-reduce whose peer
    was gone."""

    RAISED = 0
    PROCESS_DIED = 1
    PEER_LOST = 2


def failure_cause(message: str) -> Cause:
    if any(marker in message for marker in PEER_LOSS_MARKERS):
        return Cause.PEER_LOST
    if any(marker in message for marker in PROCESS_DEATH_MARKERS):
        return Cause.PROCESS_DIED
    return Cause.RAISED


def failure_message(error: Exception) -> str:
    """Each node's failure, the likely cause first; symptoms in one line each."""
    failures = getattr(error, "worker_failures", None)
    if not failures:
        return f"training failed: {error}"
    messages = {rank: str(err).strip() for rank, err in failures.items()}
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
