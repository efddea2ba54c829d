"""What each strategy's node holds (the memory floor), its collectives' modelled cost, and
the config's choice of strategy: no Ray, no process group."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from raysim.config.loading import load_config
from raysim.config.network import PRESETS
from raysim.errors import ConfigError
from raysim.projection.sharded_comm import gather_seconds
from raysim.worker.strategies import get_strategy
from raysim.worker.strategies.zero_optimizer import partition
from tests.gloo_ranks import run_ranks

PARAMS = 1_000_000


@pytest.mark.parametrize("nodes", [2, 4])
def test_sharded_strategies_hold_a_share_of_the_state(nodes):
    ddp = get_strategy("ddp").training_state(PARAMS, 2, "Adam", nodes)
    zero = get_strategy("zero").training_state(PARAMS, 2, "Adam", nodes)
    fsdp = get_strategy("fsdp").training_state(PARAMS, 2, "Adam", nodes)
    assert ddp.bytes == PARAMS * 4 * 3
    assert zero.bytes == PARAMS * 4 * (1 + 2 / nodes)  # whole gradients, shared moments
    assert fsdp.bytes == PARAMS * 4 * 3 / nodes
    assert fsdp.bytes < zero.bytes < ddp.bytes
    assert "sharded" in fsdp.held and f"/ {nodes} nodes" in fsdp.count


def test_a_strategy_is_chosen_by_config_with_a_near_miss_named():
    assert load_config(strategy="fsdp").strategy == "fsdp"
    with pytest.raises(ConfigError, match="fsdp"):
        load_config(strategy="fdsp")


def test_a_gather_costs_half_an_allreduce_on_a_ring():
    link = (
        PRESETS["10gbe"]
        if "10gbe" in PRESETS
        else next(spec for spec in PRESETS.values() if not spec.is_loopback)
    )
    nbytes = 100 * 2**20
    one_way = (4 - 1) / 4 * nbytes / link.bytes_per_second + 3 * link.latency_us * 1e-6
    assert gather_seconds(nbytes, 4, link) == pytest.approx(one_way)
    assert gather_seconds(nbytes, 1, link) == 0


def test_zero_partitions_the_largest_parameters_first_over_the_ranks():
    import torch

    params = [torch.empty(n) for n in (10, 40, 30, 20)]
    assert partition(params, 2) == [0, 0, 1, 1]  # 40+10 and 30+20


def test_fsdps_default_units_leave_tied_weights_and_embeddings_to_the_model():
    """FSDP keeps a unit's parameters sharded outside its forward: a weight the model reads
    itself (a tied output layer) or two children hold must stay in the model's own unit."""
    from torch import nn

    from examples.transformer_lm import TinyLM
    from raysim.worker.strategies.fsdp import default_units

    model = TinyLM(vocab=32, context=8, width=16, layers=2, heads=2)
    layers = model.encoder.layers  # a ModuleList: its blocks are the units
    assert default_units(model) == [layers[0], layers[1], model.norm]  # not model.embed

    tied = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 8), nn.Linear(8, 4))
    tied[2].weight = tied[0].weight  # two children hold one parameter
    assert default_units(tied) == [tied[3]]


def _tied_lm_step(rank: int, world_size: int) -> dict:
    from torch.distributed.fsdp import FSDPModule

    from examples.transformer_lm import TinyLM
    from raysim.worker.strategies.fsdp import shard_units

    torch.manual_seed(0)
    model = shard_units(TinyLM(vocab=32, context=8, width=16, layers=2, heads=2))
    tokens = torch.randint(0, 32, (4, 8), generator=torch.Generator().manual_seed(rank))
    logits = model(tokens)  # the tied output layer reads the embedding's weight
    nn.functional.cross_entropy(logits.reshape(-1, 32), tokens.reshape(-1)).backward()
    units = [name for name, m in model.named_modules() if isinstance(m, FSDPModule)]
    return {"units": units, "grads": all(p.grad is not None for p in model.parameters())}


@pytest.mark.timeout(180)
def test_a_tied_output_layer_trains_under_fsdps_default_units(tmp_path):
    """examples/transformer_lm.py's model failed under fsdp ("mixed torch.Tensor and DTensor")
    while its embedding was a unit of its own."""
    for rank in run_ranks(_tied_lm_step, 2, tmp_path):
        assert rank["units"] == ["", "encoder.layers.0", "encoder.layers.1", "norm"]
        assert rank["grads"]


class _Body(nn.Module):
    """Hugging Face's shape: a child holding the blocks' ModuleList and a final norm."""

    def __init__(self):
        super().__init__()
        self.h = nn.ModuleList(nn.Linear(8, 8) for _ in range(2))
        self.ln = nn.LayerNorm(8)

    def forward(self, x):
        for block in self.h:
            x = torch.relu(block(x))
        return self.ln(x)


class _Stacked(nn.Module):
    """torchtitan's shape: the model's own ModuleList of blocks, which has no forward."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(16, 8)
        self.layers = nn.ModuleList(nn.Linear(8, 8) for _ in range(2))
        self.body = _Body()

    def forward(self, tokens):
        x = self.embed(tokens)
        for layer in self.layers:
            x = torch.relu(layer(x))
        return self.body(x) @ self.embed.weight.T


def _stacked_step(rank: int, world_size: int) -> dict:
    from torch.distributed.fsdp import FSDPModule

    from raysim.worker.strategies.fsdp import shard_units

    torch.manual_seed(0)
    model = shard_units(_Stacked())
    tokens = torch.randint(0, 16, (4, 6), generator=torch.Generator().manual_seed(rank))
    loss = nn.functional.cross_entropy(model(tokens).reshape(-1, 16), tokens.reshape(-1))
    loss.backward()
    units = [name for name, m in model.named_modules() if isinstance(m, FSDPModule)]
    return {"units": units, "grads": all(p.grad is not None for p in model.parameters()),
            "loss": loss.item()}  # fmt: skip


@pytest.mark.timeout(180)
def test_the_blocks_of_a_stack_are_fsdps_default_units(tmp_path):
    """A ModuleList cannot be a unit (fully_shard refuses a container without a forward, so
    a model whose child was one failed under fsdp): its blocks are, at any depth a child
    holds it, and one unit of the whole stack would gather every block at once."""
    from raysim.projection.model_profile import fsdp_default_units

    expected = ["layers.0", "layers.1", "body.h.0", "body.h.1", "body.ln"]
    assert [name for name, _ in fsdp_default_units(_Stacked())] == expected
    for rank in run_ranks(_stacked_step, 2, tmp_path):
        assert rank["units"] == ["", *expected]
        assert rank["grads"]
        assert 0 < rank["loss"] < 10


def _sampled_step(rank: int, world_size: int) -> dict:
    """One FSDP step whose collectives go through the modelled link, counting the memory
    samples they take; a second model's samples raise."""
    from raysim.worker.strategies import fsdp_comm
    from raysim.worker.strategies.fsdp import shard_units
    from raysim.worker.strategies.sharded_comm import KindStats, ModelledLink

    samples = []

    def failing() -> None:
        raise RuntimeError("a sample that fails")

    counts = {}
    for name, sample in (("counted", lambda: samples.append(1)), ("failing", failing)):
        torch.manual_seed(0)
        model = shard_units(_Stacked())
        stats = KindStats()
        fsdp_comm.install(model, ModelledLink(PRESETS["loopback"], world_size, stats,
                                              sample_memory=sample))  # fmt: skip
        tokens = torch.randint(0, 16, (4, 6), generator=torch.Generator().manual_seed(rank))
        nn.functional.cross_entropy(model(tokens).reshape(-1, 16), tokens.reshape(-1)).backward()
        counts[name] = {"collectives": stats.take()["buckets"],
                        "grads": all(p.grad is not None for p in model.parameters())}  # fmt: skip
    return {**counts, "samples": len(samples)}


@pytest.mark.timeout(180)
def test_fsdps_collectives_sample_the_nodes_memory_and_a_failing_sample_fails_nothing(tmp_path):
    """The backward's peak (gathered units beside the activations, a unit's unsharded
    gradients) lies between step boundaries: every all-gather and reduce-scatter samples."""
    for rank in run_ranks(_sampled_step, 2, tmp_path):
        # 6 units: the root gathered once, 5 gathered for forward and again for backward;
        # each reduce-scattered once
        assert rank["counted"]["collectives"] == 1 + 2 * 5 + 6
        assert rank["samples"] == rank["counted"]["collectives"]
        assert rank["failing"] == rank["counted"]  # the step went on as if nothing failed
