"""Spans of a sample of steps, for the run's timeline (trace.json, `raysim trace`).

The tracer adds no timing of its own: the step measurements call it from the hooks they
already have (the prepared loader's waits, the model's forward hooks, the optimizer-step
hooks, the comm hook's buckets, the straggler's sleep, the report). It records the first
`trace_steps` optimizer steps after each report (each epoch, for a function that reports
once per epoch) and then only returns, until the next report starts the count again.

A step's spans on the compute lane tile it, from its first batch to the end of
`optimizer.step()`, as the step measurements count it: data wait, forward, straggler
delay (an emulated straggler's sleep), backward (from the forward's end: the loss and
backward, up to the last bucket's hand-off to the comm hook), all-reduce wait (from there
until the optimizer is called: the training thread blocked on communication, and any code
of the function in between, such as gradient clipping), optimizer step. What lies
between them is the function's own code (moving the batch, zero_grad). Each bucket's
real all-reduce and the emulated delay added to it go on the communication lane. Times
are wall-clock (time.time()) through a per-process offset from perf_counter, so that
nodes in different processes share one time line.
"""

from __future__ import annotations

import threading
import time
from typing import Any

Span = tuple[str, str, float, float, int, dict[str, Any] | None]
"""(lane, name, start unix s, duration s, step, args); lane: step, compute or comm; step is
the optimizer step after the report, 1-based (0: outside a step, e.g. the report)."""

STEP, COMPUTE, COMM = "step", "compute", "comm"


class StepTracer:
    def __init__(self, steps: int):
        self.limit = steps
        self.on = steps > 0
        """Tracing the running step (the first `limit` steps after a report)."""
        self.step = 1
        self.spans: list[Span] = []
        """Complete steps' spans since the last take."""
        self._step_spans: list[Span] = []
        """The running step's; kept when it ends with an optimizer step."""
        self._offset = time.time() - time.perf_counter()
        self._open: tuple[str, float] | None = None
        """A compute span that ends where the next event starts (backward)."""
        self._forward_start: float | None = None
        self._straggle: tuple[float, float] | None = None
        self._optimizer_start = 0.0
        self._last_ready = 0.0
        self._buckets = 0
        self._lock = threading.Lock()
        """Buckets complete on the process group's threads, not the training thread."""

    def _add(self, lane: str, name: str, start: float, end: float, args=None) -> None:
        self._step_spans.append(
            (lane, name, start + self._offset, max(0.0, end - start), self.step, args)
        )

    def _close(self, now: float) -> None:
        if self._open is not None:
            name, start = self._open
            self._open = None
            if self._last_ready > start:  # backward ended at the last bucket's hand-off
                self._add(COMPUTE, name, start, self._last_ready)
                self._add(COMPUTE, "all-reduce wait", self._last_ready, now)
            else:
                self._add(COMPUTE, name, start, now)

    def data_wait(self, start: float, end: float) -> None:
        if self.on:
            self._close(start)
            self._add(COMPUTE, "data wait", start, end)

    def forward_starts(self, now: float) -> None:
        if self.on:
            self._close(now)
            self._forward_start = now
            self._straggle = None

    def straggled(self, start: float, end: float) -> None:
        """The straggler's sleep, at the end of the forward (its forward hook runs first)."""
        if self.on:
            self._straggle = (start, end)

    def forward_ends(self, now: float) -> None:
        if not self.on or self._forward_start is None:
            return
        if self._straggle is not None:
            sleep_start, sleep_end = self._straggle
            self._add(COMPUTE, "forward", self._forward_start, sleep_start)
            self._add(COMPUTE, "straggler delay", sleep_start, sleep_end)
        else:
            self._add(COMPUTE, "forward", self._forward_start, now)
        self._forward_start = self._straggle = None
        self._last_ready = 0.0
        self._open = ("backward", now)

    def bucket_done(
        self, ready: float, done: float, delay: float, nbytes: int, modelled: float
    ) -> None:
        """A bucket handed over at `ready`, really all-reduced at `done`, then held `delay`."""
        if not self.on:
            return
        with self._lock:
            self._buckets += 1
            args = {"bucket": self._buckets, "bytes": nbytes, "modelled_s": modelled}
            self._add(COMM, "all-reduce", ready, done, args)
            if delay > 0:
                self._add(COMM, "emulated delay", done, done + delay, args)
            self._last_ready = max(self._last_ready, ready)

    def optimizer_starts(self, now: float) -> None:
        if self.on:
            self._close(now)
            self._optimizer_start = now

    def step_ends(self, step_start: float, now: float) -> None:
        """An optimizer step ended the step that began at step_start (the measured step)."""
        if not self.on:
            return
        self._add(COMPUTE, "optimizer step", self._optimizer_start, now)
        self._add(STEP, f"step {self.step}", step_start, now)
        self.spans += self._step_spans
        self._reset_step()
        self.step += 1
        self.on = self.step <= self.limit

    def _reset_step(self) -> None:
        self._step_spans = []
        self._open = self._forward_start = self._straggle = None
        self._last_ready = 0.0
        self._buckets = 0

    def reported(self, start: float, end: float, checkpoint: bool) -> None:
        """ray.train.report's own time: it travels with the next report."""
        name = "report + checkpoint" if checkpoint else "report"
        self.spans.append((COMPUTE, name, start + self._offset, end - start, 0, None))

    def take(self) -> list[Span]:
        """Spans since the last take; a step left open (micro-batches over) is dropped."""
        spans, self.spans = self.spans, []
        self._reset_step()
        self.step = 1
        self.on = self.limit > 0
        self._offset = time.time() - time.perf_counter()
        return spans
