"""Real gloo process groups for the tests: ranks spawned on 127.0.0.1, what each saved read back."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_ranks(worker: Callable, world_size: int, result_dir: Path) -> list:
    """Run worker(rank, world_size, port, result_dir) in world_size fresh processes; each
    saves its results to result_dir/rank{rank}.pt, returned in rank order."""
    import torch.multiprocessing as mp

    mp.spawn(worker, args=(world_size, free_port(), str(result_dir)), nprocs=world_size, join=True)
    return [torch.load(result_dir / f"rank{r}.pt") for r in range(world_size)]


# A step every rank can check: its own inputs, and the mean of every rank's gradient.


def _inputs(rank: int, step: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1000 * step + rank)
    return torch.randn(16, 1000, generator=generator), torch.randn(16, 1000, generator=generator)


def local_loss(model: nn.Module, rank: int, step: int) -> torch.Tensor:
    x, y = _inputs(rank, step)
    return nn.functional.mse_loss(model(x), y)


def mean_local_grads(module: nn.Module, step: int, world_size: int) -> list[torch.Tensor]:
    """The mean of every rank's local gradient, computed here without communication."""
    grads = [torch.zeros_like(p) for p in module.parameters()]
    for rank in range(world_size):
        module.zero_grad()
        local_loss(module, rank, step).backward()
        for total, p in zip(grads, module.parameters(), strict=True):
            total += p.grad / world_size
    module.zero_grad()
    return grads
