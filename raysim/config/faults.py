"""The `faults` key: injected faults, a repeatable experiment in what a cluster does
when a node fails. The worker fires them (raysim.worker.faults), the driver removes a
lost node's Ray node (raysim.cluster.node_loss)."""

from __future__ import annotations

from dataclasses import dataclass

FAULT_KINDS = ("worker_crash", "oom", "slow_node", "node_loss")


@dataclass(frozen=True)
class Fault:
    kind: str
    rank: int
    epoch: int
    step: int = 1
    seconds: float = 5.0
    """slow_node: how long the node stalls."""


def fault_problems(faults, num_nodes: int) -> list[str]:
    if faults is None:
        return []
    if not isinstance(faults, list):
        return [f"faults: {faults!r} must be a list of {{kind, rank, epoch, step}} mappings"]
    problems = []
    for index, fault in enumerate(faults):
        where = f"faults[{index}]"
        if not isinstance(fault, dict):
            problems.append(f"{where}: {fault!r} must be a mapping {{kind, rank, epoch, step}}")
            continue
        unknown = set(fault) - {"kind", "rank", "epoch", "step", "seconds"}
        if unknown:
            problems.append(f"{where}: unknown keys {sorted(unknown)}; use kind, rank, epoch, step")
        if fault.get("kind") not in FAULT_KINDS:
            problems.append(f"{where}: kind {fault.get('kind')!r}; use {', '.join(FAULT_KINDS)}")
        rank = fault.get("rank", 0)
        if not isinstance(rank, int) or not 0 <= rank < num_nodes:
            problems.append(f"{where}: rank {rank!r} is not a node; use 0 to {num_nodes - 1}")
        for key in ("epoch", "step"):
            value = fault.get(key, 1)
            if not isinstance(value, int) or value < 1:
                problems.append(f"{where}: {key} {value!r}; use a whole number from 1")
    return problems


def parse_faults(faults) -> list[Fault]:
    """Checked mappings (fault_problems) as Faults; Faults pass through."""
    return [f if isinstance(f, Fault) else Fault(**f) for f in faults or []]


def parse_inject(text: str) -> dict:
    """CLI form: kind:rank=R,epoch=E[,step=S][,seconds=T], e.g. worker_crash:rank=1,epoch=2."""
    kind, _, rest = text.partition(":")
    fault: dict = {"kind": kind.strip()}
    for part in filter(None, rest.split(",")):
        key, _, value = part.partition("=")
        fault[key.strip()] = float(value) if key.strip() == "seconds" else int(value)
    return fault
