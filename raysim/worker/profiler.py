"""torch.profiler on every node for a few steps (profile_steps): each node's own
operator-level trace, side by side in the run directory, for what the timeline's spans
do not show (which kernels a forward ran, how long each took).

The profiler skips the node's first step (warm-up, DDP's bucket rebuild), warms up on
the second, records the next `profile_steps`, then writes `profile/<node>.json` (Chrome
trace format: Perfetto UI and chrome://tracing open it) and stops; the steps it is
driven by are the step meter's, so a user's function needs nothing beyond `prepare`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile, schedule

SKIPPED_STEPS = 1
WARMUP_STEPS = 1


class NodeProfiler:
    def __init__(self, steps: int, device: torch.device, trace_path: Path):
        self.trace_path = trace_path
        self.steps_left = SKIPPED_STEPS + WARMUP_STEPS + steps
        activities = [ProfilerActivity.CPU]
        if device.type == "cuda":
            activities.append(ProfilerActivity.CUDA)
        self.profiler = profile(
            activities=activities,
            schedule=schedule(wait=SKIPPED_STEPS, warmup=WARMUP_STEPS, active=steps, repeat=1),
            on_trace_ready=self.write,
        )
        self.profiler.start()

    def write(self, finished: Any) -> None:
        self.trace_path.parent.mkdir(parents=True, exist_ok=True)
        finished.export_chrome_trace(str(self.trace_path))

    def step_done(self, optimizer: Any = None) -> None:
        """After each optimizer step (the step meter's on_step_end)."""
        if self.steps_left <= 0:
            return
        self.profiler.step()
        self.steps_left -= 1
        if self.steps_left == 0:
            self.profiler.stop()
