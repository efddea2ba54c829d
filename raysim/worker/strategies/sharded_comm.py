"""The sharded strategies' collectives held to the emulated link and measured by kind:
FSDP's all-gathers and reduce-scatters, ZeRO's gather of the updated parameters.

Each collective runs for real (the numbers stay exact), then is held until the time
raysim.projection.sharded_comm gives for its bytes, queued behind the previous one on the
same modelled link. On the CPU FSDP's collectives are synchronous, so the hold is in the
step. The bookkeeping never raises: an error in a collective's callback kills the process
(torch calls it inside its own C++ frames), so a measurement that fails is dropped.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from raysim.config.network import NetworkSpec
from raysim.projection.sharded_comm import gather_seconds
from raysim.worker.strategies.ddp_comm_hook import CommStats

log = logging.getLogger(__name__)

KINDS = ("all_gather", "reduce_scatter", "param_gather")
"""The collective kinds measured: FSDP's two, and ZeRO's gather after its step."""


@dataclass
class KindStats(CommStats):
    """CommStats with the bytes of each kind of collective (take adds <kind>_bytes)."""

    by_kind: dict[str, int] = field(default_factory=dict)

    def record_kind(self, kind: str, nbytes: int, modelled: float, real: float, added: float):
        with self._lock:
            self.by_kind[kind] = self.by_kind.get(kind, 0) + nbytes
        self.record(nbytes, modelled, real, added)

    def take(self) -> dict[str, float | int]:
        snapshot = super().take()
        with self._lock:
            snapshot.update({f"{kind}_bytes": nbytes for kind, nbytes in self.by_kind.items()})
            self.by_kind = {}
        return snapshot


@dataclass
class ModelledLink:
    """One node's modelled link: when it is next free, and where its figures go."""

    spec: NetworkSpec
    nodes: int
    stats: KindStats
    on_done: Callable[[float, float, float, int, float], None] | None = None
    """Told each collective's start, real end, added delay, bytes and modelled seconds."""
    sample_memory: Callable[[], None] | None = None
    """Where a collective holds more than the step's boundaries do (FSDP: gathered units
    beside the activations, a unit's unsharded gradients): the node's memory guard samples."""
    free_at: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def memory_now(self) -> None:
        if self.sample_memory is None:
            return
        try:
            self.sample_memory()
        except Exception:  # never into FSDP's backward
            log.exception("raysim: a memory sample at a collective failed; dropped")

    def hold(self, kind: str, nbytes: int, started: float) -> None:
        """The real collective of nbytes (whole tensor) that started then has ended: sleep
        out the rest of its modelled time, and record it."""
        try:
            modelled = gather_seconds(nbytes, self.nodes, self.spec)
            done = time.perf_counter()
            with self._lock:
                previous = self.free_at
                deadline = max(started, previous) + modelled
                self.free_at = deadline
            delay = max(0.0, deadline - done)
            added = max(0.0, deadline - max(done, previous))
            self.stats.record_kind(kind, nbytes, modelled, done - started, added)
            if self.on_done is not None:
                self.on_done(started, done, delay, nbytes, modelled)
        except Exception:  # a raise here would kill the process (module doc)
            log.exception("raysim: a %s collective's measurement failed; dropped", kind)
            return
        if delay > 0:
            time.sleep(delay)
