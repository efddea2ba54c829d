"""FSDP and ZeRO beside DDP on real Ray Train nodes (gloo): one unchanged training function,
the same losses and weights, each node's share of the state, the emulated link on FSDP's
collectives."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import raysim
from raysim import worker
from raysim.rundir import read_lines
from raysim.worker.strategies.zero_optimizer import partition

pytestmark = pytest.mark.slow

WIDTH = 128
"""Every layer's rows divide by 4 nodes, so FSDP's shards are exact quarters."""


def make_model(width: int = WIDTH) -> nn.Module:
    return nn.Sequential(
        nn.Linear(32, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 4)
    )  # fmt: skip


def make_data() -> TensorDataset:
    gen = torch.Generator().manual_seed(0)
    inputs = torch.randn(512, 32, generator=gen)
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
    width = config["train_config"].get("width", WIDTH)
    model, loader = worker.prepare(deep_model() if width == "deep" else make_model(width), loader)
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
    whole = [p.full_tensor() if hasattr(p, "full_tensor") else p for p in model.parameters()]
    out = Path(config["train_config"]["out"])
    torch.save([w.detach().clone() for w in whole], out / f"weights-{ctx.rank}.pt")
    figures = {
        "losses": losses, "parameter_bytes": local_bytes(model.parameters()),
        "gradient_bytes": local_bytes(grads), "optimizer_bytes": local_bytes(state),
    }  # fmt: skip
    (out / f"rank-{ctx.rank}.json").write_text(json.dumps(figures))


def run_strategy(tiny_config, tmp_path, strategy: str, nodes: int, width=WIDTH, **overrides):
    out = tmp_path / strategy
    out.mkdir()
    cfg = tiny_config(
        strategy=strategy, num_nodes=nodes, num_epochs=2, batch_size=16, gpu_fraction=0.25,
        memory_fraction=0.25, run_name=strategy, train_config={"out": str(out), "width": width},
        **overrides,
    )  # fmt: skip
    result = raysim.run(cfg, train_fn=sharded_fn, out=None)
    ranks = [json.loads((out / f"rank-{r}.json").read_text()) for r in range(nodes)]
    weights = [torch.load(out / f"weights-{r}.pt") for r in range(nodes)]
    return result, ranks, weights


def test_one_function_runs_under_ddp_zero_and_fsdp_to_the_same_loss_and_weights(
    shared_ray, tiny_config, tmp_path
):
    runs = {s: run_strategy(tiny_config, tmp_path, s, 4) for s in ("ddp", "zero", "fsdp")}
    _, ddp, ddp_weights = runs["ddp"]
    whole = sum(p.numel() * 4 for p in make_model().parameters())
    assert ddp[0]["parameter_bytes"] == ddp[0]["gradient_bytes"] == whole
    assert ddp[0]["optimizer_bytes"] == 2 * whole  # Adam's two moments, whole on every node
    for strategy in ("zero", "fsdp"):
        result, ranks, weights = runs[strategy]
        assert result.summary["status"] == "finished"
        for rank, reference in zip(ranks, ddp, strict=True):
            assert rank["losses"] == pytest.approx(reference["losses"], rel=1e-4, abs=1e-6)
        for mine, reference in zip(weights[0], ddp_weights[0], strict=True):
            torch.testing.assert_close(mine, reference, rtol=1e-4, atol=1e-5)
        # the moments are split: together the nodes hold one whole replica's
        assert sum(r["optimizer_bytes"] for r in ranks) == 2 * whole
    _, zero, _ = runs["zero"]
    # ZeRO splits whole parameters (ZeroRedundancyOptimizer's greedy partition): the
    # 128×128 weight's moments are one node's, the rest go to the others
    params = list(make_model().parameters())
    owners = partition(params, 4)
    expected = [
        sum(8 * p.numel() for p, o in zip(params, owners, strict=True) if o == r) for r in range(4)
    ]
    assert [r["optimizer_bytes"] for r in zero] == expected
    assert max(expected) < 0.8 * 2 * whole
    assert all(r["parameter_bytes"] == r["gradient_bytes"] == whole for r in zero)
    _, fsdp, _ = runs["fsdp"]
    for rank in fsdp:  # every row count divides by 4: exact quarters
        assert rank["parameter_bytes"] == rank["gradient_bytes"] == whole // 4
        assert rank["optimizer_bytes"] == 2 * whole // 4


def test_the_emulated_link_adds_fsdps_modelled_collective_time(shared_ray, tiny_config, tmp_path):
    """5 ms per message on a slow link: every all-gather and reduce-scatter is held to it."""
    link = {"name": "slow", "bandwidth_gbps": 1, "latency_us": 5000}
    result, _, _ = run_strategy(tiny_config, tmp_path, "fsdp", 2, network=link)
    ranks = [r for r in read_lines(result.run_dir / "metrics.jsonl") if r["kind"] == "rank"]
    whole = sum(p.numel() * 4 for p in make_model().parameters())
    for rank in ranks:
        modelled = rank["modelled_comm_s_per_step"]
        # 3 linear units + the root: 2 gathers and 1 scatter each per step, ≥ 5 ms apiece
        assert 3 * 3 * 0.005 <= modelled <= 4 * 3 * 0.005 + 3 * whole * 8 / 1e9
        # each collective lasts at least its modelled time: the real wait (the peer may be
        # late on a shared CPU) counts toward it, the hold adds the rest and never more
        added = rank["added_comm_delay_s_per_step"]
        assert 0 < added <= modelled
        assert rank["allreduce_wait_s_per_step"] + added >= 0.99 * modelled
        assert rank["step_time_s"] >= modelled


def deep_model() -> nn.Module:
    """The memory tests' model (tests/test_memory_estimate.py): 8.4M parameters in eight
    equal layers, so FSDP's units are small."""
    layers: list[nn.Module] = [nn.Linear(32, 1024)]
    for _ in range(8):
        layers += [nn.ReLU(), nn.Linear(1024, 1024)]
    return nn.Sequential(*layers, nn.ReLU(), nn.Linear(1024, 4))
