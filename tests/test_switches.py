"""Memory-saving switches: mixed precision, channels_last, accumulation, checkpointing."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import raysim
from raysim.builtin.loop import Switches, train_epoch
from raysim.builtin.model import build_model, checkpoint_stages
from raysim.config import ConfigError, load_config
from raysim.plan import Hardware, PlanError, make_plan
from raysim.rundir import read_lines


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
        max_steps_per_epoch=12, amp="bf16", channels_last=True, accumulate_steps=2,
        activation_checkpointing=True,
    )  # fmt: skip
    result = raysim.run(cfg, out=None)
    ranks = [r for r in read_lines(result.run_dir / "metrics.jsonl") if r["kind"] == "rank"]
    for epoch in (1, 2):
        checksums = {r["param_checksum"] for r in ranks if r["epoch"] == epoch}
        assert len(checksums) == 1, "accumulation syncs on the last micro-batch"
    assert all(r["steps"] == 12 for r in ranks)
    assert result.epochs[-1]["train_loss"] < result.epochs[0]["train_loss"]
