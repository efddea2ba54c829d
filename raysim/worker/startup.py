"""When a node (or the driver) passed each stage of start-up, up to the first step's end.

The marks are wall-clock (unix) times, so the driver's and every node's line up; a
node's travel once, with its first report after its first step (or its first report,
where raysim does not measure steps). report/startup.py turns them into stages.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

NODE_MARKS = (
    "node_start",  # Ray Train called raysim on this worker (the worker's imports are done)
    "node_ready",  # raysim set the node up: threads, device, memory cap, fault injector
    "prepare_start",  # the function called prepare: its data and model are built
    "prepare_end",  # DDP wraps the model (gloo/NCCL's first collectives), hooks installed
    "first_step_start",  # the first training batch (or forward) after prepare
    "first_step_end",  # the first optimizer step returned
)


@dataclass
class StartupMarks:
    marks: dict[str, float] = field(default_factory=dict)
    sent: bool = False

    def mark(self, name: str, unix: float | None = None) -> None:
        self.marks.setdefault(name, time.time() if unix is None else unix)

    def mark_perf(self, name: str, perf_counter: float) -> None:
        """A mark taken with time.perf_counter (the step meter's clock)."""
        self.mark(name, time.time() - (time.perf_counter() - perf_counter))

    def take(self, steps_measured: bool) -> dict[str, float] | None:
        """The marks, once: with the first report after the first measured step, or the
        first report at all where steps are not measured."""
        if self.sent or "node_start" not in self.marks:
            return None
        if steps_measured and "first_step_end" not in self.marks:
            return None
        self.sent = True
        return dict(self.marks)
