"""Documented switches: the memory-saving ones (mixed precision, channels_last,
accumulation, checkpointing) and, each run for real, jitter, gradient compression, an unenforced
budget, start weights, loader processes; and jitter and stragglers for a user's own function
(the session's users_loop_run)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import raysim
from raysim.builtin.loop import Switches, train_epoch
from raysim.builtin.model import build_model, checkpoint_stages
from raysim.config import ConfigError, load_config
from raysim.plan import Hardware, PlanError, make_plan
from raysim.rundir import rank_lines, read_lines


def test_bad_switch_values_are_named():
    with pytest.raises(ConfigError) as info:
        load_config(amp="fp8", accumulate_steps=0)
    text = str(info.value)
    assert "amp: 'fp8' is not one of bf16, fp16" in text
    assert "accumulate_steps: 0 is out of range" in text


def test_fp16_needs_cuda():
    with pytest.raises(PlanError, match="amp: fp16 needs CUDA; on the CPU use amp: bf16"):
        make_plan(load_config(amp="fp16", device="cpu"), Hardware(num_cpus=2))


def linear_run(batch: int, accumulate: int) -> torch.Tensor:
    torch.manual_seed(0)
    inputs, labels = torch.randn(32, 6), torch.randint(0, 3, (32,))
    model = nn.Linear(6, 3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    loader = DataLoader(TensorDataset(inputs, labels), batch_size=batch)
    train_epoch(model, loader, optimizer, torch.device("cpu"), None, lambda step: None,
                switches=Switches(accumulate_steps=accumulate))  # fmt: skip
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_accumulating_two_micro_batches_equals_one_batch_twice_the_size():
    together = linear_run(batch=8, accumulate=1)
    accumulated = linear_run(batch=4, accumulate=2)
    assert torch.allclose(together, accumulated, atol=1e-6)
    assert not torch.allclose(linear_run(batch=4, accumulate=1), together, atol=1e-3)


def test_checkpointed_stages_give_the_same_gradients_and_keys():
    torch.manual_seed(0)
    plain = build_model(10)
    checkpointed = checkpoint_stages(build_model(10))
    checkpointed.load_state_dict(plain.state_dict())
    assert list(checkpointed.state_dict()) == list(plain.state_dict())
    images = torch.randn(4, 3, 32, 32)
    for model in (plain, checkpointed):
        model.train()
        nn.functional.cross_entropy(model(images), torch.arange(4)).backward()
    for (name, a), (_, b) in zip(
        plain.named_parameters(), checkpointed.named_parameters(), strict=True
    ):
        assert torch.allclose(a.grad, b.grad, atol=1e-5), name


def test_bf16_autocast_on_cpu_runs_in_bf16():
    model = build_model(10)
    with Switches(amp_dtype=torch.bfloat16).autocast(torch.device("cpu")):
        logits = model(torch.randn(2, 3, 32, 32))
    assert logits.dtype == torch.bfloat16


@pytest.mark.slow
def test_all_switches_together_keep_nodes_in_lockstep(shared_ray, tiny_config):
    cfg = tiny_config(
        num_nodes=2, num_epochs=2, batch_size=16, image_size=32, learning_rate=1e-3,
        max_steps_per_epoch=8, amp="bf16", channels_last=True, accumulate_steps=2,
        activation_checkpointing=True,
    )  # fmt: skip
    result = raysim.run(cfg, out=None)
    ranks = [r for r in read_lines(result.run_dir / "metrics.jsonl") if r["kind"] == "rank"]
    for epoch in (1, 2):
        checksums = {r["param_checksum"] for r in ranks if r["epoch"] == epoch}
        assert len(checksums) == 1, "accumulation syncs on the last micro-batch"
    assert all(r["steps"] == 8 for r in ranks)
    assert result.epochs[-1]["train_loss"] < result.epochs[0]["train_loss"]


def ranks_of(result):
    return rank_lines(read_lines(result.run_dir / "metrics.jsonl"))


def quick(tiny_config, name, **overrides):
    """One epoch of three steps, as the session's short_run."""
    values = {"num_epochs": 1, "max_steps_per_epoch": 3, "run_name": name, **overrides}
    return tiny_config(**values)


@pytest.mark.slow
def test_jitter_and_stragglers_reach_a_users_function_through_prepare(users_loop_run):
    """The emulation acts on the prepared model, so a user's loop straggles as the built-in."""
    ranks = ranks_of(users_loop_run)
    assert sorted((r["epoch"], r["rank"]) for r in ranks) == [(1, 0), (1, 1), (2, 0), (2, 1)]
    for epoch in (1, 2):
        by_rank = {r["rank"]: r for r in ranks if r["epoch"] == epoch}
        # rank 0 only jitters (0 to 0.5 × its compute), rank 1 sleeps 9× its compute on top:
        # 36 times rank 0's sleep on average, 25 times measured
        fast, slow = (
            by_rank[0]["straggler_sleep_s_per_step"],
            by_rank[1]["straggler_sleep_s_per_step"],
        )
        assert fast > 0 and slow > 10 * fast, (epoch, fast, slow)
    assert all(r["allreduce_wait_s_per_step"] > 0 for r in ranks), "the hook measured the wait"


def cfg_dir(cfg):
    return Path(cfg.run_dir) / cfg.run_name


@pytest.mark.slow
def test_fp16_compression_runs_on_the_wire_and_keeps_the_ranks_equal(short_run, tiny_config):
    plain = short_run
    half = raysim.run(quick(tiny_config, "fp16", num_nodes=2, grad_compression="fp16"), out=None)
    assert half.summary["checksums_match"] and plain.summary["checksums_match"]
    # fp16 on the wire rounds the averaged gradients: the weights differ from fp32's
    assert half.epochs[-1]["param_checksum"] != plain.epochs[-1]["param_checksum"]
    assert all(r["allreduce_wait_s_per_step"] > 0 for r in ranks_of(half))
    assert abs(half.epochs[-1]["train_loss"] - plain.epochs[-1]["train_loss"]) < 0.1


@pytest.fixture(scope="module")
def forked_run(short_run):
    """The session's short_run again, with a loader process and a budget below the model's
    training state, measured and not enforced: neither may change what is trained, and the
    same seed must train the same weights (test_run's same-seed rerun, merged here)."""
    values = {**short_run.config.to_dict(), "run_name": "forked", "num_workers_per_loader": 1,
              "memory_fraction": 0.005, "enforce_memory": False}  # fmt: skip
    return raysim.run(load_config(**values), out=None)


@pytest.mark.slow
def test_an_unenforced_budget_is_measured_not_enforced(forked_run, tiny_config):
    """53 MB is below the model's 134 MB of training state: refused when enforced."""
    with pytest.raises(raysim.ConfigError, match="memory_fraction ≥ 0.02"):
        raysim.run(quick(tiny_config, "enforced", memory_fraction=0.005), out=None)
    nodes = forked_run.summary["nodes"]
    assert len(nodes) == 2
    for node in nodes:
        assert node["memory_budget_bytes"] == int(0.005 * 10 * 2**30)
        assert node["memory_peak_bytes"] > 2 * node["memory_budget_bytes"]


@pytest.mark.slow
def test_start_weights_load_and_loader_processes_deliver_the_same_batches(
    short_run, forked_run, tiny_config, tmp_path
):
    """Against one plain run: ImageNet-shaped weights (1000 classes) load into the backbone
    (the 10-class head is new), and the same seed again, with a loader process (and an
    unenforced budget), gives the very same weights."""
    torch.manual_seed(123)
    path = tmp_path / "resnet18.pth"
    torch.save(build_model(1000).state_dict(), path)
    plain = short_run.epochs[-1]["param_checksum"]
    loaded = raysim.run(quick(tiny_config, "loaded", num_nodes=2, weights_path=str(path)), out=None)
    assert loaded.epochs[-1]["param_checksum"] != plain
    assert forked_run.epochs[-1]["param_checksum"] == plain, "same seed, same weights"
    missing = quick(tiny_config, "missing", weights_path=str(tmp_path / "nowhere.pth"))
    with pytest.raises(FileNotFoundError, match=r"weights_path .*nowhere.pth does not exist"):
        raysim.run(missing, out=None)
    assert not cfg_dir(missing).exists(), "refused before the run directory is made"
