"""`raysim estimate`: each node's peak memory by category for a model and batch at any node
count under each strategy, and whether it fits the node's budget, in seconds and without
Ray or N processes (one fake step, probe.py; composed per strategy, compose.py).

The model is the built-in (the config's ResNet18 at its image size) or any `module:factory`
returning an nn.Module (built on the meta device, so a model far larger than this host's
memory is fine) with `--input-shape` for one sample (and `--input-dtype int64` for token
ids: zeros, a valid id for any vocabulary).
"""

from __future__ import annotations

from dataclasses import dataclass

from raysim.config.schema import ExperimentConfig
from raysim.config.user_code import load_callable
from raysim.errors import ConfigError
from raysim.estimate.compose import STRATEGIES, NodeMemory, StepMemory, node_memory
from raysim.units import MB

__all__ = ["Estimate", "NodeMemory", "StepMemory", "estimate", "format_estimate"]


@dataclass(frozen=True)
class Estimate:
    model: str
    batch_size: int
    nodes: int
    budget_bytes: int
    step: StepMemory
    per_strategy: dict[str, NodeMemory]

    def fits(self, strategy: str) -> bool:
        return self.per_strategy[strategy].charged_bytes <= self.budget_bytes

    def to_dict(self) -> dict:
        chosen = self.per_strategy[self.chosen]
        return {
            "model": self.model, "batch_size": self.batch_size, "nodes": self.nodes,
            "budget_bytes": self.budget_bytes, "strategy": self.chosen,
            "peak_bytes": chosen.peak_bytes, "charged_bytes": chosen.charged_bytes,
            "categories": chosen.categories,
            "strategies": {
                name: {**node.to_dict(), "fits": self.fits(name)}
                for name, node in self.per_strategy.items()
            },
            "method": "MemTracker under FakeTensorMode, one unsharded step, composed per "
            "strategy (raysim.estimate.compose); not yet calibrated to a real step",
        }  # fmt: skip

    chosen: str = "ddp"


def estimate(
    cfg: ExperimentConfig,
    model: str | None = None,
    input_shape: tuple[int, ...] | None = None,
    input_dtype: str = "float32",
) -> Estimate:
    """The config's batch and nodes; the built-in model unless `model` names a factory."""
    import torch

    dtype = getattr(torch, input_dtype, None)
    if not isinstance(dtype, torch.dtype):
        raise ConfigError([f"--input-dtype {input_dtype}: not a torch dtype; e.g. float32, int64"])

    from raysim.estimate.probe import probe_step

    if model is None:
        from raysim.builtin.model import build_model

        def build():
            return build_model(cfg.num_classes)

        shape = (3, cfg.image_size, cfg.image_size)
        name = "builtin:resnet18"
    else:
        build, shape, name = load_callable("--model", model, "factory"), input_shape, model
        if shape is None:
            raise ConfigError([f"--model {model}: give --input-shape, e.g. 3,32,32 or 784"])
    size = (cfg.batch_size, *shape)
    try:
        step = probe_step(
            build,
            lambda: (
                torch.randn(size, dtype=dtype)
                if dtype.is_floating_point
                else torch.zeros(size, dtype=dtype)
            ),
            lambda m: torch.optim.Adam(m.parameters(), lr=cfg.learning_rate),
        )
    except Exception as err:  # the user's factory or its forward: one line, not a traceback
        first = str(err).strip().splitlines()[0][:200] if str(err).strip() else ""
        batch = "×".join(map(str, size))
        problem = (
            f"{name}: one training step on a batch of {batch} {input_dtype} failed "
            f"({type(err).__name__}: {first}); give a factory that takes no arguments and an "
            "--input-shape / --input-dtype that its forward accepts"
        )
        raise ConfigError([problem]) from None
    per_strategy = {s: node_memory(step, s, cfg.num_nodes) for s in STRATEGIES}
    budget = int(cfg.memory_fraction * cfg.device_memory_gb * 2**30)
    return Estimate(
        name, cfg.batch_size, cfg.num_nodes, budget, step, per_strategy, chosen=cfg.strategy
    )


def format_estimate(result: Estimate) -> str:
    """A line per strategy: each category, the peak, what the budget is charged, fits."""
    lines = [
        f"{result.model}, batch {result.batch_size} per node, {result.nodes} nodes, budget "
        f"{result.budget_bytes / MB:.0f} MB per node (estimated, no run):"
    ]
    for name, node in result.per_strategy.items():
        parts = ", ".join(f"{k} {v / MB:.1f}" for k, v in node.categories.items())
        verdict = "fits" if result.fits(name) else "does not fit"
        lines.append(
            f"  {name:<5} peak {node.peak_bytes / MB:.1f} MB ({parts}); charged "
            f"{node.charged_bytes / MB:.1f} MB: {verdict}"
        )
    return "\n".join(lines)
