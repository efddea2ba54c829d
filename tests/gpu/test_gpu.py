"""The CUDA path: fractional GPU shares, the per-process memory cap, NVML, clear OOM.

Runs only where CUDA is visible (skipped elsewhere by conftest); each test starts its
own Ray with the GPU, so run them apart from the CPU suite: `pytest -m gpu tests`.
"""

from __future__ import annotations

import pytest
import torch

import raysim
from raysim.rundir import read_lines
from raysim.worker.memory import MemoryGuard, is_out_of_memory
from raysim.worker.nvml import nvml_metrics

pytestmark = pytest.mark.gpu


def gpu_config(tmp_path, **overrides):
    values = {
        "device": "cuda",
        "image_size": 32,
        "num_epochs": 2,
        "batch_size": 32,
        "max_steps_per_epoch": 30,
        "learning_rate": 1e-3,
        "run_dir": str(tmp_path),
        "run_name": "gpu",
    }
    values.update(overrides)
    return raysim.load_config(**values)


def test_memory_fraction_caps_the_allocator_in_this_process():
    total = torch.cuda.get_device_properties(0).total_memory
    torch.cuda.set_per_process_memory_fraction(0.02, 0)
    guard = MemoryGuard(0, int(0.02 * total), 0.02, total, 0, "cuda")
    try:
        small = torch.empty(int(0.01 * total), dtype=torch.uint8, device="cuda")
        guard.sample()
        assert guard.peak_bytes >= small.numel()
        with pytest.raises(torch.OutOfMemoryError) as info:
            torch.empty(int(0.03 * total), dtype=torch.uint8, device="cuda")
        assert is_out_of_memory(info.value)
        message = str(guard.explain(info.value))
        assert "memory_fraction 0.02" in message and "batch_size" in message
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0, 0)
        torch.cuda.empty_cache()


def test_a_tensor_freed_within_the_step_counts_in_the_epochs_peak():
    total = torch.cuda.get_device_properties(0).total_memory
    torch.cuda.reset_peak_memory_stats()
    guard = MemoryGuard(0, total, 1.0, total, 0, "cuda")
    transient = torch.empty(256 * 2**20, dtype=torch.uint8, device="cuda")
    del transient
    guard.sample()  # at the step's end it is gone
    assert guard.peak_bytes < 256 * 2**20
    assert guard.take_epoch()["memory_peak_bytes"] >= 256 * 2**20


def test_nvml_sees_this_process():
    keep = torch.ones(64 * 2**20, dtype=torch.uint8, device="cuda")
    figures = nvml_metrics(0)
    assert figures, "NVML answers on a CUDA machine"
    assert figures["nvml_device_total_bytes"] >= torch.cuda.get_device_properties(0).total_memory
    assert figures["nvml_device_used_bytes"] >= keep.numel()
    if "nvml_process_used_bytes" in figures:  # absent where the container hides pids
        assert figures["nvml_process_used_bytes"] >= keep.numel()


def test_four_nodes_share_one_gpu_with_gloo_and_capped_memory(tmp_path):
    cfg = gpu_config(tmp_path, num_nodes=4, gpu_fraction=0.23, memory_fraction=0.23)
    result = raysim.run(cfg, out=None)
    environment = result.summary["environment"]
    assert environment["backend"] == "gloo" and environment["device_kind"] == "cuda"
    total = torch.cuda.get_device_properties(0).total_memory
    ranks = [r for r in read_lines(result.run_dir / "metrics.jsonl") if r["kind"] == "rank"]
    assert {r["rank"] for r in ranks} == {0, 1, 2, 3}
    for rank in ranks:
        assert rank["memory_budget_bytes"] == int(0.23 * total)
        assert 0 < rank["cuda_peak_allocated_bytes"] <= rank["memory_budget_bytes"]
        assert rank["memory_peak_bytes"] <= rank["cuda_peak_reserved_bytes"]
    assert result.epochs[-1]["test_accuracy"] > 0.5


def test_one_node_with_a_whole_gpu_uses_nccl(tmp_path):
    cfg = gpu_config(tmp_path, num_nodes=1, gpu_fraction=1.0, memory_fraction=0.5)
    result = raysim.run(cfg, out=None)
    assert result.summary["environment"]["backend"] == "nccl"
    assert result.epochs[-1]["test_accuracy"] > 0.5


def test_a_too_small_partition_is_a_clear_out_of_memory(tmp_path):
    cfg = gpu_config(
        tmp_path, num_nodes=2, gpu_fraction=0.23, memory_fraction=0.002, batch_size=512,
        image_size=128, num_epochs=1, max_steps_per_epoch=3,
    )  # fmt: skip
    with pytest.raises(raysim.RunFailedError) as info:
        raysim.run(cfg, out=None)
    message = str(info.value)
    assert "ran out of its memory partition" in message
    assert "memory_fraction 0.00" in message and "batch_size" in message
