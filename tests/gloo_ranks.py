"""Real gloo process groups for the tests: ranks spawned on 127.0.0.1, what each saved read back."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn


def run_ranks(work: Callable[[int, int], dict], world_size: int, result_dir: Path) -> list:
    """work(rank, world_size) in world_size fresh processes, each a rank of one gloo group on
    127.0.0.1 with one torch thread; what each returned, in rank order. The ranks meet
    through a file in result_dir, not a TCP port: a port found free and released can be
    taken by another process (a Ray worker of the suite's other half) before rank 0 binds
    it."""
    import torch.multiprocessing as mp

    mp.spawn(_in_group, args=(world_size, str(result_dir), work), nprocs=world_size)
    return [torch.load(result_dir / f"rank{r}.pt") for r in range(world_size)]


def _in_group(rank: int, world_size: int, result_dir: str, work: Callable) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    address = f"file://{result_dir}/rendezvous"
    dist.init_process_group("gloo", init_method=address, rank=rank, world_size=world_size)
    try:
        results = work(rank, world_size)
    finally:
        dist.destroy_process_group()
    torch.save(results, f"{result_dir}/rank{rank}.pt")


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
