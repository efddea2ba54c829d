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
