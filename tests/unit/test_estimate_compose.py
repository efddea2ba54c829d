"""raysim estimate's arithmetic (compose.py) and what its probe reads of one fake step:
no Ray, no process group."""

from __future__ import annotations

import torch

from raysim.estimate.compose import StepMemory, UnitMemory, node_memory

MB = 10**6


def step(units: tuple[UnitMemory, ...], root_unit: int = 1 * MB) -> StepMemory:
    return StepMemory(
        parameters=100 * MB, buffers=0, gradients=100 * MB, optimizer=200 * MB,
        optimizer_step=8 * MB, activations=40 * MB, units=units, root_unit=root_unit,
    )  # fmt: skip


def test_fsdp_holds_most_where_a_units_gradients_outgrow_its_activations():
    """At each unit's backward: the earlier units' activations, the larger of its own
    activations and its unsharded gradients, its parameters and the next one's gathered,
    the root's parameters and gradients whole."""
    units = (
        UnitMemory(parameters=10 * MB, activations_before=2 * MB, activations_own=30 * MB),
        UnitMemory(parameters=10 * MB, activations_before=32 * MB, activations_own=5 * MB),
    )
    node = node_memory(step(units), "fsdp", 4)
    # unit 1 starting: 32 + (10 + 2 root) = 44; unit 2 ending: 32 + (10 + 10 + 2 + 10) = 64
    assert node.categories["activations"] == 32 * MB
    assert node.categories["communication"] == 32 * MB
    assert node.categories["parameters"] == 25 * MB  # a quarter
    assert node.charged_bytes == node.peak_bytes - 25 * MB


def test_fsdp_holds_most_at_the_forwards_end_when_the_units_are_small():
    units = (UnitMemory(1 * MB, 0, 20 * MB), UnitMemory(1 * MB, 20 * MB, 10 * MB))
    node = node_memory(step(units, root_unit=0), "fsdp", 4)
    assert node.categories["activations"] == 40 * MB  # the whole forward's
    assert node.categories["communication"] == 0


def test_ddp_and_zero_add_the_whole_activations_and_one_node_shards_nothing():
    units = (UnitMemory(50 * MB, 0, 1 * MB),)
    for strategy in ("ddp", "zero"):
        assert node_memory(step(units), strategy, 4).categories["activations"] == 40 * MB
    one = node_memory(step(units), "fsdp", 1)
    assert one.categories["communication"] == 0 and one.categories["parameters"] == 100 * MB


def test_the_probe_reads_each_transformer_blocks_activations_in_forward_order():
    from examples.transformer_lm import TinyLM
    from raysim.estimate.probe import probe_step

    layers, width = 3, 64
    probed = probe_step(
        lambda: TinyLM(vocab=50, context=16, width=width, layers=layers, heads=4),
        lambda: torch.zeros(8, 16, dtype=torch.int64),
        lambda model: torch.optim.Adam(model.parameters()),
    )
    blocks, norm = probed.units[:layers], probed.units[layers]
    assert len(probed.units) == layers + 1  # the blocks, then the final norm
    block_params = 12 * width * width * 4  # attention 4·w², feed-forward 8·w², fp32
    assert all(0.95 < b.parameters / block_params < 1.05 for b in blocks)
    befores = [b.activations_before for b in blocks]
    assert befores == sorted(befores) and befores[0] > 0  # the embedding's output first
    for earlier, later in zip(blocks, blocks[1:], strict=False):
        kept = later.activations_before - earlier.activations_before  # less what was freed
        assert 0.9 * earlier.activations_own <= kept <= earlier.activations_own
    assert norm.activations_before + norm.activations_own <= probed.activations
    assert probed.root_unit == (50 * width + 16 * width) * 4  # embedding and positions


def test_memory_is_sampled_in_each_epochs_first_steps_and_one_in_sixteen_after():
    from raysim.worker.memory import SAMPLED_EVERY, SAMPLED_FIRST, samples_memory

    sampled = [total for total in range(100) if samples_memory(total % 40, total)]
    epoch_starts = [s for e in (0, 40, 80) for s in range(e, e + SAMPLED_FIRST)]
    assert sampled == sorted(set(epoch_starts) | set(range(0, 100, SAMPLED_EVERY)))
    assert len(sampled) == 12 + 7 - 2  # 0 and 80 are both
