"""FSDP and ZeRO beside DDP on real Ray Train nodes (gloo): one unchanged training function,
the same losses and weights, each node's share of the state, the emulated link on FSDP's
collectives. The three runs (tests/local_ray/conftest.py: sharded_runs) are shared with
test_memory_estimate, which reads their measured peaks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import raysim
from raysim import worker
from raysim.config import load_config
from raysim.rundir import read_lines
from raysim.worker.strategies.zero_optimizer import partition
from tests.conftest import TINY

pytestmark = pytest.mark.slow

NODES = 4
"""Every layer's rows divide by 4, so FSDP's shards are exact quarters."""
RUN_MEMORY_FRACTION = 0.15
"""1.6 GB of the 10 GiB simulated device a node: far above the MLP's ~0.1 GB peak, and the
host check's reservation for 4 such nodes (about 10.4 GB) leaves room for the suite's other
worker beside them (at 0.25 it asked 14.7 GB, and once found 14.5 free)."""
SLOW_LINK = {"name": "slow", "bandwidth_gbps": 10, "latency_us": 5000}
"""5 ms per message: FSDP's collectives are held well past their real time on any CPU."""


def deep_model(depth: int = 8) -> nn.Module:
    """8.4M parameters in eight equal layers (16.8M in 16; FSDP's units small): big enough
    that the training state, not the allocator's noise, sets the measured peak
    (test_memory_estimate)."""
    layers: list[nn.Module] = [nn.Linear(32, 1024)]
    for _ in range(depth):
        layers += [nn.ReLU(), nn.Linear(1024, 1024)]
    return nn.Sequential(*layers, nn.ReLU(), nn.Linear(1024, 4))


def make_data() -> TensorDataset:
    gen = torch.Generator().manual_seed(0)
    inputs = torch.randn(256, 32, generator=gen)
    return TensorDataset(inputs, (inputs @ torch.randn(32, generator=gen) > 0).long())


def local_bytes(tensors) -> int:
    """Bytes this node holds of these tensors (a DTensor's local shard)."""
    total = 0
    for tensor in tensors:
        local = tensor.to_local() if hasattr(tensor, "to_local") else tensor
        total += local.numel() * local.element_size()
    return total


def sharded_fn(config: dict) -> None:
    """Plain PyTorch on every node: nothing here names a strategy."""
    ctx = worker.context()
    torch.manual_seed(config["seed"])
    loader = DataLoader(make_data(), batch_size=config["batch_size"], shuffle=False)
    model, loader = worker.prepare(deep_model(config["train_config"]["depth"]), loader)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for epoch in range(1, config["num_epochs"] + 1):
        loader.sampler.set_epoch(epoch)
        for inputs, labels in loader:
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(model(inputs), labels)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        worker.report({"loss": sum(losses[-len(loader) :]) / len(loader)})
    grads = [p.grad for p in model.parameters()]  # the last step's
    state = [v for s in optimizer.state.values() for k, v in s.items() if k != "step"]
    out = Path(config["train_config"]["out"])
    if config["train_config"]["whole_weights"]:  # gathered whole: beyond a tight budget
        whole = [p.full_tensor() if hasattr(p, "full_tensor") else p for p in model.parameters()]
        torch.save([w.detach().clone() for w in whole], out / f"weights-{ctx.rank}.pt")
    figures = {
        "losses": losses, "parameter_bytes": local_bytes(model.parameters()),
        "gradient_bytes": local_bytes(grads), "optimizer_bytes": local_bytes(state),
    }  # fmt: skip
    (out / f"rank-{ctx.rank}.json").write_text(json.dumps(figures))


def run_strategy(
    root: Path,
    strategy: str,
    depth: int = 8,
    name: str = "",
    whole_weights: bool = True,
    **overrides,
):
    """sharded_fn under strategy on NODES nodes with deep_model(depth): the result, each
    rank's figures, and each rank's whole weights at the end (where whole_weights)."""
    out = root / (name or strategy)
    out.mkdir()
    cfg = load_config(**{
        **TINY, "strategy": strategy, "num_nodes": NODES, "num_epochs": 2, "batch_size": 16,
        "gpu_fraction": 0.25, "memory_fraction": RUN_MEMORY_FRACTION, "run_dir": str(root / "runs"),
        "run_name": name or strategy,
        "train_config": {"out": str(out), "depth": depth, "whole_weights": whole_weights},
        **overrides,
    })  # fmt: skip
    result = raysim.run(cfg, train_fn=sharded_fn, out=None)
    ranks = [json.loads((out / f"rank-{r}.json").read_text()) for r in range(NODES)]
    weights = [torch.load(out / f"weights-{r}.pt") for r in range(NODES) if whole_weights]
    return result, ranks, weights


def whole_bytes() -> int:
    return sum(p.numel() * 4 for p in deep_model().parameters())


def test_one_function_runs_under_ddp_zero_and_fsdp_to_the_same_loss_and_weights(sharded_runs):
    runs = sharded_runs
    _, ddp, ddp_weights = runs["ddp"]
    whole = whole_bytes()
    assert ddp[0]["parameter_bytes"] == ddp[0]["gradient_bytes"] == whole
    assert ddp[0]["optimizer_bytes"] == 2 * whole  # Adam's two moments, whole on every node
    for strategy in ("zero", "fsdp"):  # fsdp on the slow link: it only delays
        result, ranks, weights = runs[strategy]
        assert result.summary["status"] == "finished"
        for rank, reference in zip(ranks, ddp, strict=True):  # 1.8e-4 apart at most, seen
            assert rank["losses"] == pytest.approx(reference["losses"], rel=1e-3, abs=1e-6)
        # 4 ranks sum in a different order under each strategy, and Adam scales every
        # element's update to about lr whatever its gradient: the few elements whose
        # gradients are near zero carry that rounding into their weights, by up to a few
        # updates (1 to 23 of a layer's 1M elements, up to 0.036, seen); a gradient not
        # averaged over the nodes moves nearly every element
        for mine, reference in zip(weights[0], ddp_weights[0], strict=True):
            apart = (mine - reference).abs()
            assert (apart > 1e-4).float().mean() < 1e-3
            assert apart.max() < 0.1
        # the moments are split: together the nodes hold one whole replica's
        assert sum(r["optimizer_bytes"] for r in ranks) == 2 * whole
    _, zero, _ = runs["zero"]
    # ZeRO splits whole parameters (ZeroRedundancyOptimizer's greedy partition): each
    # 1024×1024 weight's moments are one node's, in turn, the small ones fill in
    params = list(deep_model().parameters())
    owners = partition(params, NODES)
    expected = [
        sum(8 * p.numel() for p, o in zip(params, owners, strict=True) if o == r)
        for r in range(NODES)
    ]
    assert [r["optimizer_bytes"] for r in zero] == expected
    assert max(expected) < 0.8 * 2 * whole
    assert all(r["parameter_bytes"] == r["gradient_bytes"] == whole for r in zero)
    _, fsdp, _ = runs["fsdp"]
    for rank in fsdp:  # every row count divides by 4: exact quarters
        assert rank["parameter_bytes"] == rank["gradient_bytes"] == whole // NODES
        assert rank["optimizer_bytes"] == 2 * whole // NODES


def test_the_emulated_link_adds_fsdps_modelled_collective_time(sharded_runs):
    """5 ms per message on a slow link: every all-gather and reduce-scatter is held to it
    (a ring's N-1 messages: projection/sharded_comm.py)."""
    result, _, _ = sharded_runs["fsdp"]
    ranks = [r for r in read_lines(result.run_dir / "metrics.jsonl") if r["kind"] == "rank"]
    assert len(ranks) == 2 * NODES  # a record per node and epoch
    units = sum(1 for child in deep_model().children() if list(child.parameters()))
    latency = (NODES - 1) * SLOW_LINK["latency_us"] / 1e6
    bandwidth = SLOW_LINK["bandwidth_gbps"] * 1e9 / 8 * NODES / (NODES - 1)
    for rank in ranks:
        modelled = rank["modelled_comm_s_per_step"]
        # every linear unit (and at most the root): 2 gathers and 1 scatter each per
        # step, ≥ (N-1) × 5 ms apiece, and its bytes on the wire at most once each
        assert (
            units * 3 * latency
            <= modelled
            <= (units + 1) * 3 * latency + 3 * (whole_bytes() / bandwidth)
        )
        # each collective lasts at least its modelled time: the real wait (the peer may be
        # late on a shared CPU) counts toward it, the hold adds the rest and never more
        added = rank["added_comm_delay_s_per_step"]
        assert 0 < added <= modelled
        assert rank["allreduce_wait_s_per_step"] + added >= 0.99 * modelled
        assert rank["step_time_s"] >= modelled
