"""The watch for a hung node, one per rank: when a collective has waited longer than
collective_timeout_s for a node that never entered it, it names that node (not the peers
waiting in it), the collective and the step, and ends the worker group.

Every rank reads every rank's ledger (raysim.worker.collective_ledger). The first to see
the stall writes it to the run directory (one file per worker group, created
exclusively); every rank that sees that file ends its process, the hung one with the
rest, so Ray Train restarts the group or the run fails, and no process is left waiting.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from raysim.rundir import FAULTS_DIR
from raysim.worker.collective_ledger import read_ledgers


def find_stall(
    ledgers: list[dict[str, Any]], world_size: int, now: float, timeout_s: float
) -> dict[str, Any] | None:
    """The node(s) behind, and the collective their peers have waited in longer than
    timeout_s (the first they did not enter); None while every rank is up."""
    if len(ledgers) < world_size:
        return None
    lowest = min(ledger["seq"] for ledger in ledgers)
    behind = [ledger for ledger in ledgers if ledger["seq"] == lowest]
    ahead = [ledger for ledger in ledgers if ledger["seq"] > lowest]
    missed = [e for ledger in ahead for e in ledger["history"] if e["seq"] == lowest + 1]
    if not ahead or not missed:
        return None
    first = min(missed, key=lambda entry: entry["unix"])
    waited = now - first["unix"]
    if waited < timeout_s:
        return None
    return {
        "stopped": [_where(ledger) for ledger in sorted(behind, key=lambda x: x["rank"])],
        "waiting": sorted(ledger["node"] for ledger in ahead),
        "collective": {k: first[k] for k in ("seq", "kind", "bytes")},
        "entered_unix": first["unix"],
        "waited_s": waited,
        "timeout_s": timeout_s,
    }


def _where(ledger: dict[str, Any]) -> dict[str, Any]:
    return {k: ledger[k] for k in ("rank", "node", "epoch", "step", "step_unix", "seq")}


def stall_path(run_dir: Path, group: str) -> Path:
    return Path(run_dir) / FAULTS_DIR / f"stall-{group}.json"


class HangWatch:
    """This rank's watch: a daemon thread polling the group's ledgers."""

    def __init__(self, run_dir: Path, group: str, world_size: int, timeout_s: float,
                 end: Callable[[], None] = lambda: os._exit(1)):  # fmt: skip
        """end: how this rank's process ends once the group's stall is written (abruptly:
        the training thread may be inside a collective no Python can interrupt)."""
        self.run_dir, self.group, self.world_size = Path(run_dir), group, world_size
        self.timeout_s = timeout_s
        self.poll_s = min(0.25, timeout_s / 10)
        self.end = end
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._watch, name="raysim-hang-watch", daemon=True)
        self.thread.start()

    def _watch(self) -> None:
        path = stall_path(self.run_dir, self.group)
        while not self.stop.wait(self.poll_s):
            if not path.exists():
                ledgers = list(read_ledgers(self.run_dir, self.group))
                stall = find_stall(ledgers, self.world_size, time.time(), self.timeout_s)
                if stall is None:
                    continue
                self._write(path, stall)
            self.end()
            return

    def _write(self, path: Path, stall: dict[str, Any]) -> None:
        """The first rank to find the stall tells it; the others' writes are refused."""
        stall = {**stall, "group": self.group, "detected_unix": time.time()}
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            handle = os.open(path.with_suffix(".tmp"), os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return
        with os.fdopen(handle, "w") as out:
            json.dump(stall, out)
        if path.exists():  # another rank told it between our look and our claim
            path.with_suffix(".tmp").unlink()
        else:
            os.replace(path.with_suffix(".tmp"), path)

    def close(self) -> None:
        self.stop.set()
