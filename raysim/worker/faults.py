"""Worker side of injected faults: each fires exactly once per run.

The firing is recorded as a marker file in the run directory (created exclusively)
before the fault acts, so a restarted worker group, or a resumed run, does not fire
it again; the driver and the recorder read the markers (raysim.rundir.fired_faults).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from raysim.config.faults import Fault
from raysim.rundir import FAULTS_DIR
from raysim.worker.preemption import local_notice, watched

NODE_LOSS_GRACE_S = 120.0
"""A node_loss worker waits this long for the driver to remove its Ray node, then exits."""

NOTICE_POLL_S = 0.05


class FaultInjector:
    def __init__(self, faults: list[Fault], run_dir: Path, node_index: int,
                 on_data_wait: Callable[[float, float], None] | None = None):  # fmt: skip
        """node_index: the simulated node (its rank, unless nodes were lost and ranks moved);
        on_data_wait: told a data stall's start and seconds (the step meter's data wait)."""
        self.mine = [(i, f) for i, f in enumerate(faults) if f.rank == node_index]
        self.markers = Path(run_dir) / FAULTS_DIR
        self.on_data_wait = on_data_wait
        self.data_stall_s = 0.0
        """The prepared loader's wait before each batch until its pass ends (data_stall)."""

    def at_step(self, epoch: int, step: int) -> None:
        for index, fault in self.mine:
            if (fault.epoch, fault.step) == (epoch, step) and self._claim(index, fault):
                self._act(fault)

    def before_batch(self, index: int) -> None:
        """The prepared loader is about to fetch batch `index` of its pass (0: a new pass,
        which for a loop over its loader once an epoch is a new epoch: a stall ends)."""
        if index == 0:
            self.data_stall_s = 0.0
        if self.data_stall_s:
            time.sleep(self.data_stall_s)

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

    def _act(self, fault: Fault) -> None:
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
        if fault.kind == "hang":
            # The node stops entering collectives: its peers wait in the next one until a
            # rank's hang watch (raysim.worker.hang_watch) ends the worker group.
            while True:
                time.sleep(3600)
        if fault.kind == "data_stall":
            self._stall_data(fault.seconds)
        if fault.kind == "preempt":
            self._await_notice(fault.notice_s)

    @staticmethod
    def _await_notice(notice_s: float) -> None:
        """The node holds its notice at the fault's step, as an instance holds its cloud's
        reclaim notice: the driver drains the Ray node on seeing the marker and Ray Train's
        watcher hands the notice on, each by polling, which a loaded host can stretch past
        the next steps. Bounded by the notice: at the deadline the node goes anyway."""
        if not watched():
            return
        give_up = time.monotonic() + notice_s
        while local_notice() is None and time.monotonic() < give_up:
            time.sleep(NOTICE_POLL_S)

    def _stall_data(self, seconds: float) -> None:
        """This step's batch came late, and so does every later one of the loader's pass."""
        start = time.perf_counter()
        time.sleep(seconds)
        if self.on_data_wait is not None:
            self.on_data_wait(start, seconds)
        self.data_stall_s = seconds
