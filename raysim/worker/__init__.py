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
            worker.report({"epoch": epoch, "loss": loss})  # + raysim's measurements

The built-in ResNet18 experiment (raysim.builtin) is written on these calls only.
A plain `ray.train.report` call works too.
"""

from raysim.config.schema import ExperimentConfig
from raysim.worker.session import (
    NodeContext,
    context,
    inject_faults,
    prepare,
    progress,
    report,
    sample_memory,
)

__all__ = [
    "ExperimentConfig",
    "NodeContext",
    "context",
    "inject_faults",
    "prepare",
    "progress",
    "report",
    "sample_memory",
]
