"""raysim's own measurements of every training step, for any training function.

`prepare` installs them on what the function trains with: forward hooks on the model
(samples and the start of backward), the prepared loader (time waiting for data) and
this process's optimizer-step hooks (a step ends when an optimizer steps). A step runs
from the first batch (or training forward) after the previous optimizer step to the
end of the next one, so evaluation and reporting between epochs are not counted.
The same hooks give the tracer (tracer.py) its spans, for the steps it samples.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from raysim.worker.tracer import StepTracer


def batch_size_of(batch: Any) -> int:
    """Samples in a batch: the first dimension of its first tensor (tensors, tuples, dicts)."""
    if isinstance(batch, torch.Tensor):
        return int(batch.shape[0]) if batch.dim() else 1
    if isinstance(batch, dict):
        batch = list(batch.values())
    if isinstance(batch, list | tuple):
        for item in batch:
            size = batch_size_of(item)
            if size:
                return size
    return 0


@dataclass
class StepMeter:
    """Step figures since the last report; `take` reads and resets them."""

    on_forward_end: list = field(default_factory=list)
    """Called with the time each training forward ends: backward starts there."""
    on_step_end: list = field(default_factory=list)
    """Called after every optimizer step, with the optimizer."""
    step_start: float | None = None
    forward_end: float = 0.0
    """When the last training forward of the running step ended: backward starts there."""
    total_steps: int = 0
    first_step: tuple[float, float] | None = None
    """When the first optimizer step of this process started and ended (perf_counter)."""
    steps: int = 0
    samples: int = 0
    step_s: float = 0.0
    data_wait_s: float = 0.0
    tracer: StepTracer | None = None
    """Spans of the first steps after each report (trace_steps), from these same hooks."""

    def _start(self, now: float) -> None:
        if self.step_start is None:
            self.step_start = now

    def waited_for_data(self, started: float, seconds: float) -> None:
        self._start(started)
        self.data_wait_s += seconds
        if self.tracer is not None:
            self.tracer.data_wait(started, started + seconds)

    def before_forward(self, module: torch.nn.Module, args: tuple, kwargs: Any = None) -> None:
        """Registered with_kwargs: a Hugging Face model gets its batch as keywords."""
        if module.training:
            now = time.perf_counter()
            self._start(now)
            self.samples += batch_size_of(args) or batch_size_of(kwargs or {})
            if self.tracer is not None:
                self.tracer.forward_starts(now)

    def after_forward(self, module: torch.nn.Module, args: tuple, output: Any) -> None:
        if module.training:
            self.forward_end = time.perf_counter()
            for callback in self.on_forward_end:
                callback(self.forward_end)
            if self.tracer is not None:
                self.tracer.forward_ends(self.forward_end)

    def before_optimizer_step(self) -> None:
        if self.tracer is not None and self.step_start is not None:
            self.tracer.optimizer_starts(time.perf_counter())

    def after_optimizer_step(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        if self.step_start is None:
            return  # an optimizer step with no training forward before it: not a step
        now = time.perf_counter()
        self.steps += 1
        self.total_steps += 1
        self.step_s += now - self.step_start
        if self.first_step is None:
            self.first_step = (self.step_start, now)
        if self.tracer is not None:
            self.tracer.step_ends(self.step_start, now)
        self.step_start = None
        for callback in self.on_step_end:
            callback(optimizer)

    def take(self) -> dict[str, float | int]:
        """Per optimizer step since the last take; nothing before the first step."""
        if not self.steps:
            self.step_start = None
            return {}
        figures = {
            "optimizer_steps": self.steps,
            "measured_samples": self.samples,
            "train_time_s": self.step_s,
            "step_time_s": self.step_s / self.steps,
            "samples_per_s": self.samples / self.step_s if self.step_s else 0.0,
            "data_wait_s_per_step": self.data_wait_s / self.steps,
        }
        self.steps = self.samples = 0
        self.step_s = self.data_wait_s = 0.0
        self.step_start = None  # a step never spans a report (micro-batches left over)
        return figures


class MeasuredLoader:
    """The user's loader, timing each wait for a batch; everything else passes through
    (len, sampler.set_epoch, dataset, ...)."""

    def __init__(self, loader: Any, meter: StepMeter,
                 before_batch: Callable[[int], None] | None = None):  # fmt: skip
        """before_batch: called with each batch's index in the pass, inside the timed wait
        (an injected data stall)."""
        self.loader = loader
        self.meter = meter
        self.before_batch = before_batch

    def __iter__(self) -> Iterator:
        batches = iter(self.loader)
        for index in itertools.count():
            start = time.perf_counter()
            if self.before_batch is not None:
                self.before_batch(index)
            try:
                batch = next(batches)
            except StopIteration:
                return
            self.meter.waited_for_data(start, time.perf_counter() - start)
            yield batch

    def __len__(self) -> int:
        return len(self.loader)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.loader, name)
