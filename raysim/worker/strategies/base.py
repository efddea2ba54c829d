"""What a parallel strategy is to raysim: how a node's model is wrapped, the hooks that
emulate the network on its collectives and measure them, the training state a node holds
(its memory floor), and what is watched on the model for its facts.

Nothing here imports torch: the driver asks a strategy for the memory floor before
torch is imported (raysim.preload imports it meanwhile).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Protocol

if TYPE_CHECKING:
    import torch

    from raysim.config.schema import ExperimentConfig
    from raysim.plan.memory_floor import TrainingState
    from raysim.plan.resources import ResourcePlan
    from raysim.worker.model_facts import ModelFacts


MMAP_THRESHOLD = 1 << 20
"""Under a sharded strategy on the CPU, allocations from 1 MiB up are mapped and unmapped on
their own (glibc's M_MMAP_THRESHOLD), as a device's caching allocator reuses its blocks.
FSDP frees and re-allocates every unit's gathered parameters twice a step, ZeRO its
broadcast parameters and the optimizer's temporaries once; glibc then raises its dynamic
threshold, keeps them in its heap and trims the heap's top now and then, so a node reads
as holding what it freed: FSDP, an 8.5M-parameter MLP on 2 ranks, 380 MB above the
baseline against 129 MB with the threshold fixed; ZeRO, the same MLP on 4 ranks, one
node 76 MB against 61 MB for its peers, 69-73 MB for all four with it fixed (torch
2.14.1, glibc 2.36, 2026-12-06/07)."""


def return_large_frees(model: torch.nn.Module) -> None:
    """On the CPU, fix glibc's mmap threshold at MMAP_THRESHOLD (its docstring says why)."""
    from raysim.worker.glibc import fix_mmap_threshold

    first = next(model.parameters(), None)
    if first is not None and first.device.type == "cpu":
        fix_mmap_threshold(MMAP_THRESHOLD)


class CollectiveStats(Protocol):
    def take(self) -> dict[str, float | int]:
        """modelled_comm_s, real_comm_s and added_delay_s since the last take, then zero."""
        ...


@dataclass(frozen=True)
class CollectiveSetup:
    """What the hooks on a node's collectives are given (the node has peers)."""

    cfg: ExperimentConfig
    world_size: int
    wanted: bool
    """Hooks needed even where nothing models the wire: measurements or stragglers."""
    host_allreduce: bool = False
    """The plan lets the collectives go through shared memory (every node on this host)."""
    on_ready: Callable[[int, float], None] | None = None
    """Told each gradient bucket's bytes and when it was handed over (the model's facts)."""
    on_done: Callable[[float, float, float, int, float], None] | None = None
    """Told each collective's spans (the tracer)."""
    on_shared_bytes: Callable[[int], None] | None = None
    """Told the bytes moved into shared memory: still the node's own (its memory guard)."""
    on_enter: Callable[[str, int], None] | None = None
    """Told each collective's kind and bytes as this node enters it (the hang watch's
    ledger, raysim.worker.collective_ledger)."""
    sample_memory: Callable[[], None] | None = None
    """Samples the node's memory where a collective holds more than a step's boundaries do
    (FSDP's gathered units and unsharded gradients, in the backward)."""


@dataclass(frozen=True)
class CollectiveHooks:
    """What was installed: the figures the hooks keep, and whether shared memory carries
    the collectives."""

    stats: CollectiveStats | None = None
    host_allreduce: bool = False


class Strategy(ABC):
    """One way of spreading the training over the nodes; one file per strategy."""

    name: ClassVar[str]

    @abstractmethod
    def wrap(self, model: torch.nn.Module, plan: ResourcePlan) -> torch.nn.Module:
        """The model as this strategy trains it on the node (on its device)."""

    @abstractmethod
    def emulate_network(self, model: torch.nn.Module, setup: CollectiveSetup) -> CollectiveHooks:
        """Hooks on the wrapped model's collectives: the emulated link's time, measured."""

    @abstractmethod
    def training_state(
        self, parameters: int, moments: int | None, optimizer: str, world_size: int
    ) -> TrainingState:
        """What each node holds from the first step on, whatever the batch (moments None:
        the optimizer is not known yet)."""

    @abstractmethod
    def watch_model(
        self, model: torch.nn.Module, facts: ModelFacts, world_size: int, plan: ResourcePlan
    ) -> None:
        """Hooks that feed the model's facts (e.g. when each gradient bucket is ready)."""
