"""Worker side of injected faults: each fires exactly once per run.

The firing is recorded as a marker file in the run directory (created exclusively)
before the fault acts, so a restarted worker group, or a resumed run, does not fire
it again; the driver and the recorder read the markers (raysim.rundir.fired_faults).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict
from pathlib import Path

from raysim.config.faults import Fault
from raysim.rundir import FAULTS_DIR

NODE_LOSS_GRACE_S = 120.0
"""A node_loss worker waits this long for the driver to remove its Ray node, then exits."""


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
