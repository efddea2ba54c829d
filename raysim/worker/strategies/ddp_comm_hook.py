"""The DDP communication hook that makes the all-reduce take as long as the modelled link.

It runs the real all-reduce (the gradients stay exact) and then holds each bucket back
until the time raysim.projection.comm_model gives for the chosen network, so the measured
step time includes a realistic communication cost, overlapped with backward as DDP
overlaps it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

import torch
import torch.distributed as dist
from torch.distributed.algorithms.ddp_comm_hooks import default_hooks

from raysim.config.network import NetworkSpec
from raysim.projection.comm_model import allreduce_seconds, compressed_bytes
from raysim.worker.strategies.ddp_host_allreduce import HostAllreduce


@dataclass
class CommStats:
    """Communication figures the hook accumulates; take() reads and resets them.

    Per bucket: modelled seconds on the emulated link, real seconds (hook call to real
    all-reduce done) and the delay the emulation added beyond the real all-reduce, counted
    once where buckets wait at the same time, so it is wall time the link added.
    """

    buckets: int = 0
    comm_bytes: int = 0
    modelled_comm_s: float = 0.0
    real_comm_s: float = 0.0
    added_delay_s: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def record(self, nbytes: int, modelled_s: float, real_s: float, added_s: float) -> None:
        # Hook callbacks run on the process group's threads, not the training thread.
        with self._lock:
            self.buckets += 1
            self.comm_bytes += nbytes
            self.modelled_comm_s += modelled_s
            self.real_comm_s += real_s
            self.added_delay_s += added_s

    def take(self) -> dict[str, float | int]:
        """Snapshot since the last take (per step or per epoch), then start again from zero."""
        with self._lock:
            snapshot = {
                "buckets": self.buckets,
                "comm_bytes": self.comm_bytes,
                "modelled_comm_s": self.modelled_comm_s,
                "real_comm_s": self.real_comm_s,
                "added_delay_s": self.added_delay_s,
            }
            self.buckets = self.comm_bytes = 0
            self.modelled_comm_s = self.real_comm_s = self.added_delay_s = 0.0
        return snapshot


@dataclass
class EmulationState:
    """The hook's state: what to model, where to record, and when the link is next free."""

    spec: NetworkSpec
    nodes: int
    stats: CommStats
    compression: str | None = None
    process_group: Any = None
    """None: the default process group."""
    host: HostAllreduce | None = None
    """Where the ranks share this host and nothing is compressed: the all-reduce through
    shared memory, instead of gloo's."""
    link_free_at: float = 0.0
    """perf_counter time the modelled link finishes its last bucket (buckets queue on it)."""
    on_ready: Callable[[int, float], None] | None = None
    """Told each bucket's bytes and the time DDP handed it over (the model's facts)."""
    on_done: Callable[[float, float, float, int, float], None] | None = None
    """Told each bucket's hand-over time, real all-reduce end, the delay added after it,
    its bytes on the wire and its modelled seconds (the tracer)."""
    on_enter: Callable[[str, int], None] | None = None
    """Told "allreduce" and the bytes on the wire as this rank enters each bucket's."""


def _real_allreduce(state: EmulationState, bucket):
    """The real all-reduce's future, and how to read the averaged bucket from its value
    (None: the value is the bucket). Through shared memory: done before it returns.
    Uncompressed over gloo: torch's allreduce_hook without its own Python callback (the
    hook's callback below is then the only one on gloo's thread); fp16/bf16: torch's hooks."""
    if state.host is not None:
        done: torch.futures.Future = torch.futures.Future()
        done.set_result(state.host.allreduce(bucket))
        return done, None
    if state.compression is None:
        group = state.process_group if state.process_group is not None else dist.group.WORLD
        buffer = bucket.buffer()
        buffer.div_(group.size())
        work = dist.all_reduce(buffer, group=group, async_op=True)
        return work.get_future(), itemgetter(0)  # the work's value: [the bucket]
    hook = {"fp16": default_hooks.fp16_compress_hook, "bf16": default_hooks.bf16_compress_hook}
    return hook[state.compression](state.process_group, bucket), None


def _emulation_hook(state: EmulationState, bucket):
    # No annotations on purpose: DDP rejects a hook whose bucket annotation is a string.
    t0 = time.perf_counter()
    buffer = bucket.buffer()
    gradient_bytes = buffer.numel() * buffer.element_size()
    if state.on_ready is not None:
        state.on_ready(gradient_bytes, t0)
    nbytes = compressed_bytes(gradient_bytes, state.compression)
    if state.on_enter is not None:
        state.on_enter("allreduce", nbytes)
    modelled = allreduce_seconds(nbytes, state.nodes, state.spec)
    # Buckets share one modelled link: one starts when both it and the link are ready.
    previous = state.link_free_at
    deadline = max(t0, previous) + modelled
    state.link_free_at = deadline
    real_future, averaged = _real_allreduce(state, bucket)

    def hold_until_modelled(future):
        value = future.value() if averaged is None else averaged(future.value())
        done = time.perf_counter()
        delay = max(0.0, deadline - done)
        # Count a wait once where it overlaps the previous bucket's (the link was busy).
        state.stats.record(nbytes, modelled, done - t0, max(0.0, deadline - max(done, previous)))
        if state.on_done is not None:
            state.on_done(t0, done, delay, nbytes, modelled)
        if delay > 0:
            time.sleep(delay)
        return value

    return real_future.then(hold_until_modelled)


def make_emulation_hook(
    spec: NetworkSpec,
    world_size: int,
    stats: CommStats,
    compression: str | None = None,
    *,
    process_group: Any = None,
    host: HostAllreduce | None = None,
    on_ready: Callable[[int, float], None] | None = None,
    on_done: Callable[[float, float, float, int, float], None] | None = None,
    on_enter: Callable[[str, int], None] | None = None,
) -> tuple[EmulationState, Any]:
    """(state, hook) for ddp_model.register_comm_hook(state, hook).

    The hook runs the real all-reduce (through host's shared memory where given, else as
    torch's allreduce_hook does, or its fp16/bf16 compress hook), then completes the
    bucket's future no earlier than the modelled time for the bucket's bytes over
    world_size nodes on spec, queued behind earlier buckets on the same modelled link.
    Real time (hook call to real all-reduce done, which includes waiting for the process
    group's threads or the peers), modelled time and the added sleep go to stats.
    """
    if world_size < 1:
        raise ValueError(f"world_size: {world_size!r} must be at least 1")
    if host is not None and compression is not None:
        raise ValueError("the shared-memory all-reduce does not compress: pass host=None")
    state = EmulationState(
        spec, world_size, stats, compression, process_group, host, on_ready=on_ready,
        on_done=on_done, on_enter=on_enter,
    )  # fmt: skip
    return state, _emulation_hook
