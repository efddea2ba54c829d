"""The trained model's real figures, for the run directory and the projection.

At `prepare`: parameters and gradient bytes. From the steps: DDP's bucket layout in
all-reduce order (as the comm hook sees it, after DDP's rebuild in the first step) and,
per bucket, the share of backward elapsed when it was ready (median over steps). With
one node there is no DDP: the layout is the one DDP would build with the plan's cap,
and a bucket is ready when the last of its parameters' gradients is. For the projection
to a real cluster, which runs DDP's default buckets whatever the plan chose here, the
same is measured for the default layout from the parameters' gradient hooks, with how
long backward took.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

import torch

from raysim.projection.comm_model import bucket_sizes

READY_HISTORY = 50
"""Steps kept for the median of each bucket's ready share. The gradient hooks (the
strategy's, raysim.worker.strategies) watch the first this many steps, then are removed,
so they cost the steps after nothing."""


def unwrapped(model: torch.nn.Module) -> torch.nn.Module:
    return getattr(model, "module", model)


@dataclass
class ModelFacts:
    name: str
    parameters: int
    trainable_parameters: int
    gradient_bytes: int
    default_buckets_bytes: list[int]
    """The layout DDP's default caps give this model: what a real cluster runs."""
    ddp_buckets_bytes: list[int] = field(default_factory=list)
    ready_history: list[list[float]] = field(default_factory=list)
    default_ready_history: list[list[float]] = field(default_factory=list)
    backward_history: list[float] = field(default_factory=list)
    _default_ready_times: dict[int, float] = field(default_factory=dict)
    _backward_start: float = 0.0
    _ready_times: list[tuple[int, float]] = field(default_factory=list)
    """This step's (bucket bytes, ready time), in the order the buckets became ready."""
    gradient_hooks: list = field(default_factory=list)
    _steps_watched: int = 0

    @classmethod
    def of(cls, model: torch.nn.Module) -> ModelFacts:
        inner = unwrapped(model)
        trainable = [p for p in inner.parameters() if p.requires_grad]
        return cls(
            name=type(inner).__name__,
            parameters=sum(p.numel() for p in inner.parameters()),
            trainable_parameters=sum(p.numel() for p in trainable),
            gradient_bytes=sum(p.numel() * p.element_size() for p in trainable),
            default_buckets_bytes=bucket_sizes(inner, None),
        )

    def backward_starts(self, now: float) -> None:
        self._backward_start = now
        self._ready_times.clear()
        self._default_ready_times.clear()

    def bucket_ready(self, nbytes: int, now: float) -> None:
        self._ready_times.append((nbytes, now))

    def default_bucket_ready(self, index: int, now: float) -> None:
        self._default_ready_times[index] = now

    def step_done(self) -> None:
        """Close the step: its layout, and each bucket's ready share of backward (the last
        bucket is ready when backward's compute ends)."""
        self._close_default_layout()
        self._steps_watched += 1
        if self._steps_watched == READY_HISTORY:
            for handle in self.gradient_hooks:
                handle.remove()
        if not self._ready_times:
            return
        self.ddp_buckets_bytes = [nbytes for nbytes, _ in self._ready_times]
        span = self._ready_times[-1][1] - self._backward_start
        shares = [
            (ready - self._backward_start) / span if span > 0 else 1.0
            for _, ready in self._ready_times
        ]
        self.ready_history = [*self.ready_history[-(READY_HISTORY - 1) :], shares]
        self._ready_times = []

    def _close_default_layout(self) -> None:
        times = self._default_ready_times
        if len(times) != len(self.default_buckets_bytes) or not times:
            return  # a step whose backward did not reach every bucket (or a frozen part)
        span = max(times.values()) - self._backward_start
        if span <= 0:
            return
        shares = [(times[k] - self._backward_start) / span for k in range(len(times))]
        self.default_ready_history = [*self.default_ready_history[-(READY_HISTORY - 1) :], shares]
        self.backward_history = [*self.backward_history[-(READY_HISTORY - 1) :], span]
        times.clear()

    def to_dict(self) -> dict[str, Any]:
        same_layout = [h for h in self.ready_history if len(h) == len(self.ddp_buckets_bytes)]
        return {
            "name": self.name,
            "parameters": self.parameters,
            "trainable_parameters": self.trainable_parameters,
            "gradient_bytes": self.gradient_bytes,
            "ddp_buckets_bytes": self.ddp_buckets_bytes,
            "bucket_ready_fraction": [statistics.median(s) for s in zip(*same_layout, strict=True)],
            "default_buckets_bytes": self.default_buckets_bytes,
            "default_bucket_ready_fraction": [
                statistics.median(s) for s in zip(*self.default_ready_history, strict=True)
            ],
            "backward_s": statistics.median(self.backward_history)
            if self.backward_history
            else None,
        }
