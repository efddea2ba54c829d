"""The all-reduce through shared memory, in real gloo process groups on this host."""

from __future__ import annotations

import resource

import pytest
import torch
from torch import nn

from raysim.config.network import parse_network
from raysim.units import MB
from raysim.worker.memory import enforce_cpu_budget
from raysim.worker.strategies.ddp_comm_hook import CommStats, make_emulation_hook
from raysim.worker.strategies.ddp_host_allreduce import HostAllreduce
from tests.gloo_ranks import local_loss, mean_local_grads, run_ranks

WORLD = 3  # chunks of unequal size: 1000 × 1000 + 1000 values do not divide by 3
STEPS = 3


def _train(
    rank: int, ddp_kwargs: dict, shared: list[int], resume: dict | None = None, **host
) -> dict:
    """resume: the state after step 1, for a new DDP (a restarted worker group) to go on from;
    host: HostAllreduce's settings."""
    from torch.nn.parallel import DistributedDataParallel

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(1000, 1000), nn.Linear(1000, 1000))
    if resume is not None:
        model.load_state_dict(resume)
    reference = nn.Sequential(nn.Linear(1000, 1000), nn.Linear(1000, 1000))
    ddp = DistributedDataParallel(model, **ddp_kwargs)
    host = HostAllreduce.probe(on_shared_bytes=shared.append, **host)
    assert host is not None, "every rank is a process on this host"
    stats = CommStats()
    ddp.register_comm_hook(*make_emulation_hook(parse_network(None), WORLD, stats, host=host))
    optimizer = torch.optim.SGD(ddp.parameters(), lr=0.1)
    out: dict = {"max_grad_error": 0.0, "grads": [], "buckets": []}
    for step in range(0 if resume is None else 1, STEPS):
        reference.load_state_dict(model.state_dict())
        expected = mean_local_grads(reference, step, WORLD)
        optimizer.zero_grad()
        local_loss(ddp, rank, step).backward()
        grads = [p.grad.clone() for p in model.parameters()]
        out["grads"].append(grads)
        out["buckets"].append(stats.take()["buckets"])
        optimizer.step()
        if step == 0:
            out["after_first"] = {k: v.clone() for k, v in model.state_dict().items()}
        error = max(
            ((g - e).abs().max() / e.abs().max()).item()
            for g, e in zip(grads, expected, strict=True)
        )
        out["max_grad_error"] = max(out["max_grad_error"], error)
    out["grads_shared"] = [p.grad.is_shared() for p in model.parameters()]
    return out


def _work(rank: int, world_size: int) -> dict:
    guard = enforce_cpu_budget(rank, 2000 * MB, 0.2, 10 * 1024 * MB)
    limit_before = resource.getrlimit(resource.RLIMIT_DATA)[0]
    one: list[int] = []
    plans = {"bucket_cap_mb": 250, "gradient_as_bucket_view": True}  # nodes on one host
    results = {
        "one_bucket": _train(rank, plans, one),
        "two_buckets": _train(rank, {"bucket_cap_mb": 3}, []),
    }
    after_first = results["one_bucket"]["after_first"]
    results["resumed"] = _train(rank, plans, [], resume=after_first)
    results["small_blocks"] = _train(rank, plans, [], sum_block=100_000)
    guard.hold_shared(one[-1])
    results["shared_bytes"] = one
    results["limit_drop"] = limit_before - resource.getrlimit(resource.RLIMIT_DATA)[0]
    results["guard_shared"] = guard.shared_bytes
    return results


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    return run_ranks(_work, WORLD, tmp_path_factory.mktemp("host_allreduce"))


GRADIENT_BYTES = 2 * (1000 * 1000 + 1000) * 4


@pytest.mark.timeout(180)
@pytest.mark.parametrize("layout", ["one_bucket", "two_buckets"])
def test_gradients_are_every_ranks_mean_and_the_same_bits_on_every_rank(ranks, layout):
    for rank in ranks:
        assert rank[layout]["max_grad_error"] < 1e-5
    for step in range(STEPS):
        first = ranks[0][layout]["grads"][step]
        for other in ranks[1:]:
            for a, b in zip(first, other[layout]["grads"][step], strict=True):
                assert torch.equal(a, b), f"{layout}: step {step} differs between ranks"


@pytest.mark.timeout(180)
def test_a_restarted_group_goes_on_with_the_same_bits(ranks):
    """A new DDP lays its first step's bucket out in parameter order, later steps in
    gradient-ready order: with three ranks the sum must not depend on an element's chunk."""
    for rank in ranks:
        went_on = rank["one_bucket"]["grads"][1:]
        for step, (a, b) in enumerate(zip(went_on, rank["resumed"]["grads"], strict=True)):
            assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True)), f"step {step + 1}"


@pytest.mark.timeout(180)
def test_a_chunk_summed_a_block_at_a_time_gives_the_same_bits(ranks):
    """Each rank's chunk (667,334 values) in 7 blocks of 100,000 against one block."""
    for rank in ranks:
        for step, (a, b) in enumerate(
            zip(rank["one_bucket"]["grads"], rank["small_blocks"]["grads"], strict=True)
        ):
            assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True)), f"step {step}"


@pytest.mark.timeout(180)
def test_buckets_move_into_shared_memory_with_the_gradients_as_their_views(ranks):
    for rank in ranks:
        assert rank["one_bucket"]["grads_shared"] == [True] * 4
        assert rank["one_bucket"]["buckets"] == [1] * STEPS
        # 1 MB buckets: DDP's first step has one bucket, its rebuild after it two or more
        assert rank["two_buckets"]["buckets"][0] == 1
        assert rank["two_buckets"]["buckets"][-1] >= 2


@pytest.mark.timeout(180)
def test_the_memory_guard_charges_the_shared_bucket_and_lowers_the_data_limit(ranks):
    for rank in ranks:
        # shared at the first step, then again after DDP rebuilt its bucket: the same size
        assert rank["shared_bytes"] == [GRADIENT_BYTES, GRADIENT_BYTES]
        assert rank["guard_shared"] == GRADIENT_BYTES
        assert rank["limit_drop"] == GRADIENT_BYTES
