"""The model facts' gradient-ready hooks and the memory sample, without Ray: what they
record, and that they stop costing anything once they have recorded it."""

import mmap
import os
import time

import pytest
import torch

from raysim.procfs import data_segment_bytes
from raysim.worker.model_facts import READY_HISTORY, ModelFacts
from raysim.worker.strategies.ddp_buckets import watch_default_buckets, watch_single_node_buckets


def tiny_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.ReLU(), torch.nn.Linear(256, 8))


def backward(model: torch.nn.Module, facts: ModelFacts) -> None:
    loss = model(torch.randn(4, 64)).sum()
    facts.backward_starts(time.perf_counter())
    model.zero_grad(set_to_none=True)
    loss.backward()


def train_steps(model: torch.nn.Module, facts: ModelFacts, steps: int) -> None:
    for _ in range(steps):
        backward(model, facts)
        facts.step_done()


def test_the_gradient_hooks_record_their_steps_then_are_removed():
    model = tiny_model()
    facts = ModelFacts.of(model)
    watch_default_buckets(model, facts)
    watch_single_node_buckets(model, facts, cap_mb=0.005)  # 5 kB: one bucket per layer
    assert len(facts.gradient_hooks) == 2 * len(list(model.parameters()))
    train_steps(model, facts, READY_HISTORY + 10)
    assert len(facts.default_ready_history) == READY_HISTORY
    assert len(facts.ready_history) == READY_HISTORY
    assert facts.ddp_buckets_bytes == [(256 * 8 + 8) * 4, (64 * 256 + 256) * 4]
    figures = facts.to_dict()
    assert figures["bucket_ready_fraction"][-1] == 1.0
    assert 0 < figures["bucket_ready_fraction"][0] < 1.0  # the last layer's, ready first
    # Before removal a backward reaches every hook; after it, none.
    fresh = ModelFacts.of(model)
    watch_default_buckets(model, fresh)
    backward(model, fresh)
    assert len(fresh._default_ready_times) == 1
    backward(model, facts)
    assert facts._default_ready_times == {} and facts._ready_times == []


def _private_mapping(nbytes: int) -> mmap.mmap:
    """New private writable memory, which the data segment counts. Not a bytearray: malloc
    may hand that a free block left in the heap by earlier tests, which is counted already."""
    return mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)


def test_the_memory_sample_follows_the_data_segment():
    """statm's data field: VmData plus the main stack; it grows with an allocation and
    reads the child's own figure after a fork."""
    with open("/proc/self/status") as status:
        fields = dict(line.split(":", 1) for line in status)
    vm_data = int(fields["VmData"].split()[0]) * 1024
    stack = int(fields["VmStk"].split()[0]) * 1024
    assert data_segment_bytes() - vm_data == pytest.approx(stack, abs=256 * 1024)
    before = data_segment_bytes()
    block = _private_mapping(64 * 2**20)
    assert 60 * 2**20 < data_segment_bytes() - before < 70 * 2**20
    block.close()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child allocates; the parent's figure must not see it
        child_block = _private_mapping(32 * 2**20)
        os.write(write, str(data_segment_bytes()).encode())
        child_block.close()
        os._exit(0)
    os.waitpid(pid, 0)
    assert int(os.read(read, 64)) - data_segment_bytes() > 24 * 2**20
