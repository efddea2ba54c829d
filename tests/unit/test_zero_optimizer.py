"""ZeRO-1's sharded step in real gloo process groups: every rank ends each step with the
owners' parameters, sent through one message buffer kept between steps."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from raysim.worker.strategies import zero_optimizer
from tests.gloo_ranks import local_loss, run_ranks

WORLD = 2
STEPS = 3


def _work(rank: int, world_size: int) -> dict:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(1000, 300), nn.Linear(300, 1000))
    sharding = zero_optimizer.install(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    out: dict = {"params": [], "buffer_ptrs": [], "buffer_numel": []}
    for step in range(STEPS):
        optimizer.zero_grad()
        local_loss(model, rank, step).backward()  # each rank its own gradient: no DDP
        optimizer.step()
        out["params"].append([p.detach().clone() for p in model.parameters()])
        buffer = sharding._messages[torch.float32]
        out["buffer_ptrs"].append(buffer.data_ptr())
        out["buffer_numel"].append(buffer.numel())
    out["moments"] = sum(
        v.numel() for s in optimizer.state.values() for k, v in s.items() if k != "step"
    )
    return out


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    return run_ranks(_work, WORLD, tmp_path_factory.mktemp("zero"))


@pytest.mark.timeout(180)
def test_every_rank_ends_each_step_with_the_owners_parameters(ranks):
    for step in range(STEPS):
        for a, b in zip(ranks[0]["params"][step], ranks[1]["params"][step], strict=True):
            assert torch.equal(a, b), f"step {step}"
    # the two 300,000-element weights go one to each rank: each keeps moments for its share
    assert [rank["moments"] for rank in ranks] == [2 * (300_000 + 1000), 2 * (300_000 + 300)]


@pytest.mark.timeout(180)
def test_the_message_buffer_is_the_largest_share_and_kept_between_steps(ranks):
    for rank in ranks:
        assert rank["buffer_numel"] == [301_000] * STEPS
        assert len(set(rank["buffer_ptrs"])) == 1
