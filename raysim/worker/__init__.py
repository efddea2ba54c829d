"""The public worker API: what a training function calls on a simulated node.

    from raysim import worker

    def train_fn(config):
        ctx = worker.context()                         # node id, rank, world size, device, budget
        model, loader = worker.prepare(model, loader)  # DDP, sampler, network, stragglers, budget
        for epoch in ...:
            for step, batch in enumerate(loader, 1):
                worker.inject_faults(epoch, step)      # fire any fault injected here
                ...                                    # plain PyTorch
                worker.sample_memory()                 # the exact per-report peak
                worker.progress(epoch, step, len(loader))
                if worker.preemption_notice():             # a node is being drained
                    worker.report_preemption_checkpoint(epoch, step, checkpoint)
                    worker.hold_for_preemption()           # until Ray Train restarts
            worker.report({"epoch": epoch, "loss": loss})  # + raysim's measurements

The calls live in raysim.worker.api. The built-in ResNet18 experiment (raysim.builtin) is
written on these calls only. A plain `ray.train.report` call works too.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from raysim.config.schema import ExperimentConfig

if TYPE_CHECKING:  # what static tools see; at run time loaded on first use (below)
    from raysim.worker.api import (
        NodeContext,
        PreemptionNotice,
        context,
        experiment_config,
        hold_for_preemption,
        inject_faults,
        preemption_notice,
        prepare,
        progress,
        report,
        report_preemption_checkpoint,
        sample_memory,
    )

__all__ = [
    "ExperimentConfig", "NodeContext", "PreemptionNotice", "context", "experiment_config",
    "hold_for_preemption", "inject_faults", "preemption_notice", "prepare", "progress",
    "report", "report_preemption_checkpoint", "sample_memory",
]  # fmt: skip

_API = frozenset(__all__) - {"ExperimentConfig"}
"""Loaded on first use (they need torch): the driver imports raysim.worker's start-up
marks before torch is imported."""


def __getattr__(name: str) -> Any:
    if name in _API:
        value = getattr(importlib.import_module("raysim.worker.api"), name)
        globals()[name] = value  # looked up once: a loop calls these every step
        return value
    raise AttributeError(f"module 'raysim.worker' has no attribute {name!r}")
