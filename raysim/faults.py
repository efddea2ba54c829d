"""Injected faults: a repeatable experiment in what a cluster does when a node fails.

Each fault fires exactly once per run: the firing is recorded as a marker file in
the run directory (created exclusively) before the fault acts, so a restarted
worker group, or a resumed run, does not fire it again.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

FAULT_KINDS = ("worker_crash", "oom", "slow_node", "node_loss")
FAULTS_DIR = "faults"
NODE_LOSS_GRACE_S = 120.0
"""A node_loss worker waits this long for the driver to remove its Ray node, then exits."""


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
    return [Fault(**fault) for fault in faults or []]


def parse_inject(text: str) -> dict:
    """CLI form: kind:rank=R,epoch=E[,step=S][,seconds=T], e.g. worker_crash:rank=1,epoch=2."""
    kind, _, rest = text.partition(":")
    fault: dict = {"kind": kind.strip()}
    for part in filter(None, rest.split(",")):
        key, _, value = part.partition("=")
        fault[key.strip()] = float(value) if key.strip() == "seconds" else int(value)
    return fault


class FaultInjector:
    def __init__(self, faults: list[Fault], run_dir: Path, node_index: int):
        """node_index: the simulated node (its rank, unless nodes were lost and ranks moved)."""
        self.mine = [(i, f) for i, f in enumerate(faults) if f.rank == node_index]
        self.markers = Path(run_dir) / FAULTS_DIR

    def at_step(self, epoch: int, step: int) -> None:
        for index, fault in self.mine:
            if (fault.epoch, fault.step) == (epoch, step) and self._claim(index, fault):
                self._act(fault)

    def _claim(self, index: int, fault: Fault) -> bool:
        self.markers.mkdir(parents=True, exist_ok=True)
        try:
            handle = os.open(
                self.markers / f"fault-{index}.json", os.O_CREAT | os.O_EXCL | os.O_WRONLY
            )
        except FileExistsError:
            return False
        with os.fdopen(handle, "w") as marker:
            json.dump({**asdict(fault), "index": index, "fired_unix": time.time()}, marker)
        return True

    @staticmethod
    def _act(fault: Fault) -> None:
        if fault.kind == "worker_crash":
            os._exit(1)  # abrupt, as a killed process: no exception, no cleanup
        if fault.kind == "slow_node":
            time.sleep(fault.seconds)
        if fault.kind == "oom":
            raise MemoryError(f"injected fault: node-{fault.rank} exceeded its memory budget")
        if fault.kind == "node_loss":
            # The driver's NodeLossWatcher sees the marker and removes this Ray node, which
            # ends this process with it; until then the node stalls, as a dead host does.
            time.sleep(NODE_LOSS_GRACE_S)
            os._exit(1)


def fired_faults(run_dir: Path) -> list[dict]:
    """The faults fired so far; a marker still being written is left for the next look."""
    markers = Path(run_dir) / FAULTS_DIR
    if not markers.is_dir():
        return []
    fired = []
    for path in sorted(markers.glob("fault-*.json")):
        try:
            fired.append(json.loads(path.read_text()))
        except json.JSONDecodeError:
            continue
    return fired


class NodeLossWatcher:
    """Driver side of node_loss: removes the Ray node of each simulated node whose
    node_loss marker appears. Markers from before the watcher started (a resumed run)
    were handled by the run that fired them."""

    POLL_S = 0.2

    def __init__(self, run_dir: Path, remove_node: Callable[[int], None]):
        self.run_dir = Path(run_dir)
        self.remove_node = remove_node
        self.handled = {f["index"] for f in fired_faults(self.run_dir)}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._watch, name="raysim-node-loss", daemon=True)

    def __enter__(self) -> NodeLossWatcher:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()

    def _watch(self) -> None:
        while not self.stop.wait(self.POLL_S):
            for fault in fired_faults(self.run_dir):
                if fault["kind"] == "node_loss" and fault["index"] not in self.handled:
                    self.handled.add(fault["index"])
                    self.remove_node(fault["rank"])
