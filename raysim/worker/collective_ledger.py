"""Each rank's ledger of the collectives it entered: the last few, by sequence number,
rewritten in place in one small file per rank in the run directory, so that a watch on
any rank (raysim.worker.hang_watch) sees which node stopped entering them.

A strategy's hooks call `entered(kind, bytes)` as a collective starts (DDP: each
bucket's all-reduce, each forward's buffer broadcast); `at_step` notes the step the
training function is in. Ranks of one worker group share a group id, so a ledger left
by an earlier group is never read as a peer's.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from raysim.rundir import COLLECTIVES_DIR

RECORD_BYTES = 1024
"""Each write fills the same bytes at the start of the file: a reader never sees two."""
HISTORY = 4
"""Collectives kept: the one a stopped node did not enter is among a peer's last few."""


def ledger_path(run_dir: Path, rank: int) -> Path:
    return Path(run_dir) / COLLECTIVES_DIR / f"rank-{rank}.json"


class CollectiveLedger:
    """This rank's ledger; thread-safe (DDP's hook runs on autograd's and gloo's threads)."""

    def __init__(self, run_dir: Path, group: str, rank: int, node: str):
        path = ledger_path(run_dir, rank)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644)
        self.state = {
            "group": group, "rank": rank, "node": node, "pid": os.getpid(), "seq": 0,
            "epoch": 0, "step": 0, "step_unix": time.time(), "history": [],
        }  # fmt: skip
        self.lock = threading.Lock()
        self._write()

    def at_step(self, epoch: int, step: int) -> None:
        with self.lock:
            self.state.update(epoch=epoch, step=step, step_unix=time.time())
            self._write()

    def entered(self, kind: str, nbytes: int) -> None:
        with self.lock:
            state = self.state
            state["seq"] += 1
            entry = {
                "seq": state["seq"], "kind": kind, "bytes": int(nbytes), "unix": time.time(),
                "epoch": state["epoch"], "step": state["step"],
            }  # fmt: skip
            state["history"] = [*state["history"][-(HISTORY - 1) :], entry]
            self._write()

    def _write(self) -> None:
        data = json.dumps(self.state, separators=(",", ":")).encode()
        os.pwrite(self.fd, data.ljust(RECORD_BYTES - 1) + b"\n", 0)

    def close(self) -> None:
        os.close(self.fd)


def read_ledgers(run_dir: Path, group: str) -> Iterator[dict]:
    """The ledgers of one worker group's ranks, as they last wrote them."""
    for path in (Path(run_dir) / COLLECTIVES_DIR).glob("rank-*.json"):
        try:
            ledger = json.loads(path.read_bytes().strip() or b"{}")
        except (OSError, json.JSONDecodeError):
            continue
        if ledger.get("group") == group:
            yield ledger
