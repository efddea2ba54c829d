"""Parallel strategies by name: how a node's model is wrapped, its collectives emulated and
measured, and the state it holds (DDP, ZeRO-1, FSDP; a strategy is one file and one line
here)."""

from __future__ import annotations

from raysim.errors import did_you_mean
from raysim.worker.strategies.base import CollectiveHooks, CollectiveSetup, Strategy
from raysim.worker.strategies.ddp import DDP
from raysim.worker.strategies.fsdp import FSDP
from raysim.worker.strategies.zero import ZeRO

STRATEGIES: dict[str, Strategy] = {strategy.name: strategy for strategy in (DDP(), ZeRO(), FSDP())}
"""Every strategy the config's `strategy` key names (raysim.config.schema.STRATEGIES)."""

__all__ = ["CollectiveHooks", "CollectiveSetup", "STRATEGIES", "Strategy", "get_strategy"]


def get_strategy(name: str) -> Strategy:
    """The strategy of that name (the config's `strategy`, checked when it was loaded)."""
    if name not in STRATEGIES:
        hint = did_you_mean(name, STRATEGIES)
        raise ValueError(f"strategy: {name!r} is not one of {', '.join(STRATEGIES)}; {hint}")
    return STRATEGIES[name]
