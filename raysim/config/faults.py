"""The `faults` key: injected faults, a repeatable experiment in what a cluster does
when a node fails. The worker fires them (raysim.worker.faults), the driver removes a
lost node's Ray node (raysim.cluster.node_loss), every rank watches for a hung one
(raysim.worker.hang_watch)."""

from __future__ import annotations

from dataclasses import dataclass

from raysim.errors import ConfigError, did_you_mean

FAULT_KINDS = ("worker_crash", "oom", "slow_node", "node_loss", "hang", "data_stall", "preempt")
FAULT_KEYS = ("kind", "rank", "epoch", "step", "seconds", "notice_s")
LATE_KINDS = ("slow_node", "data_stall")
"""Faults that make a node late and fail nothing (a failure they precede is another's)."""
RAY_NODE_KINDS = ("node_loss", "preempt")
"""Faults that act on a simulated node's Ray node: they need topology multi_node."""


@dataclass(frozen=True)
class Fault:
    kind: str
    rank: int
    epoch: int
    step: int = 1
    seconds: float = 5.0
    """slow_node: how long the node stalls; data_stall: how long its loader waits for each
    batch from this step to the epoch's end."""
    notice_s: float = 5.0
    """preempt: how far ahead of the drain's deadline the node is told."""


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
        problems += _one_fault_problems(where, fault, num_nodes)
    return problems


def _one_fault_problems(where: str, fault: dict, num_nodes: int) -> list[str]:
    problems = []
    unknown = set(fault) - set(FAULT_KEYS)
    if unknown:
        problems.append(f"{where}: unknown keys {sorted(unknown)}; use {', '.join(FAULT_KEYS)}")
    kind = fault.get("kind")
    if kind not in FAULT_KINDS:
        hint = did_you_mean(kind, FAULT_KINDS) if isinstance(kind, str) else ""
        problems.append(f"{where}: kind {kind!r}; {hint}use {', '.join(FAULT_KINDS)}")
    rank = fault.get("rank", 0)
    if not isinstance(rank, int) or not 0 <= rank < num_nodes:
        problems.append(f"{where}: rank {rank!r} is not a node; use 0 to {num_nodes - 1}")
    for key in ("epoch", "step"):
        value = fault.get(key, 1)
        if not isinstance(value, int) or value < 1:
            problems.append(f"{where}: {key} {value!r}; use a whole number from 1")
    for key in ("seconds", "notice_s"):
        value = fault.get(key, 1.0)
        if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
            problems.append(f"{where}: {key} {value!r}; use a number of seconds above 0")
    return problems


def step_problems(faults: list[Fault], steps_per_epoch: int, why: str) -> list[str]:
    """Faults at a step the epoch never reaches (it has steps_per_epoch; why: whence that
    is known): they would never fire."""
    return [
        f"faults[{index}]: {fault.kind} at step {fault.step} never fires: an epoch has "
        f"{steps_per_epoch} step(s) ({why}); use a step from 1 to {steps_per_epoch}"
        for index, fault in enumerate(faults)
        if fault.step > steps_per_epoch
    ]


def parse_faults(faults) -> list[Fault]:
    """Checked mappings (fault_problems) as Faults; Faults pass through."""
    return [f if isinstance(f, Fault) else Fault(**f) for f in faults or []]


def parse_inject(text: str) -> dict:
    """CLI form: kind:rank=R,epoch=E[,step=S][,seconds=T][,notice_s=N], e.g.
    worker_crash:rank=1,epoch=2 or hang:rank=1,epoch=2,step=3."""
    kind, _, rest = text.partition(":")
    fault: dict = {"kind": kind.strip()}
    for part in filter(None, rest.split(",")):
        key, _, value = part.partition("=")
        key = key.strip()
        try:
            fault[key] = float(value) if key in ("seconds", "notice_s") else int(value)
        except ValueError:
            raise ConfigError(
                [f"--inject {text}: {key}={value!r} is not a number; e.g. hang:rank=1,epoch=2"]
            ) from None
    return fault
