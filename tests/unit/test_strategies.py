"""The strategies' registry and DDP's memory floor, without Ray."""

import pytest

from raysim.config.schema import STRATEGIES as CONFIG_STRATEGIES
from raysim.plan.memory_floor import training_state_bytes
from raysim.worker.strategies import STRATEGIES, get_strategy


def test_the_config_allows_exactly_the_registered_strategies():
    assert tuple(STRATEGIES) == CONFIG_STRATEGIES
    assert all(get_strategy(name).name == name for name in STRATEGIES)


def test_an_unknown_strategy_names_the_near_miss():
    with pytest.raises(
        ValueError, match=r"'dpp' is not one of ddp, zero, fsdp; did you mean 'ddp'"
    ):
        get_strategy("dpp")


def test_a_ddp_node_holds_a_whole_replicas_state_whatever_the_node_count():
    ddp = get_strategy("ddp")
    one, four = (ddp.training_state(1_000_000, 2, "Adam", nodes) for nodes in (1, 4))
    assert one == four
    assert one.bytes == training_state_bytes(1_000_000, 2)
    assert ddp.training_state(1_000_000, None, "SGD", 4).held == "gradients"
