"""Bad fault input is one line each, before Ray starts (no Ray here)."""

from __future__ import annotations

import pytest

from raysim.builtin.checks import steps_per_epoch
from raysim.cli import main
from raysim.config import load_config, parse_inject
from raysim.errors import ConfigError
from raysim.node_program import check_fault_steps


def test_misspelt_kind_says_did_you_mean():
    with pytest.raises(ConfigError) as err:
        load_config(num_nodes=2, faults=[parse_inject("hnag:rank=1,epoch=1")])
    assert err.value.problems == [
        "faults[0]: kind 'hnag'; did you mean 'hang'? use worker_crash, oom, slow_node, "
        "node_loss, hang, data_stall, preempt"
    ]


def test_step_past_a_capped_epoch():
    with pytest.raises(ConfigError) as err:
        load_config(
            num_nodes=2, max_steps_per_epoch=5, faults=[parse_inject("oom:rank=1,epoch=1,step=6")]
        )
    assert len(err.value.problems) == 1
    assert "step 6 never fires: an epoch has 5 step(s)" in err.value.problems[0]


def test_step_past_the_builtin_epoch():
    cfg = load_config(
        num_nodes=2, batch_size=8, faults=[parse_inject("oom:rank=1,epoch=1,step=91")]
    )
    assert steps_per_epoch(cfg) == 90  # 1,438 digits for training, 719 a node, 8 a batch
    with pytest.raises(ConfigError) as err:
        check_fault_steps(cfg)
    assert "an epoch has 90 step(s) (digits, 2 node(s) × batch_size 8)" in err.value.problems[0]
    check_fault_steps(load_config(num_nodes=2, faults=[parse_inject("oom:rank=1,epoch=1,step=90")]))


def test_preempt_on_single_host():
    with pytest.raises(ConfigError) as err:
        load_config(num_nodes=2, faults=[parse_inject("preempt:rank=1,epoch=1,notice_s=5")])
    assert err.value.problems == [
        "faults: preempt acts on a simulated node's Ray node, and on single_host every node "
        "shares one: use topology: multi_node"
    ]
    cfg = load_config(
        num_nodes=2, topology="multi_node",
        faults=[parse_inject("preempt:rank=1,epoch=1,step=2,notice_s=5")],
    )  # fmt: skip
    assert (cfg.faults[0].kind, cfg.faults[0].notice_s) == ("preempt", 5.0)


def test_hang_needs_the_collective_timeout():
    with pytest.raises(ConfigError) as err:
        load_config(num_nodes=2, faults=[parse_inject("hang:rank=1,epoch=1,step=2")])
    assert "collective_timeout_s" in err.value.problems[0]
    cfg = load_config(
        num_nodes=2, collective_timeout_s=5, faults=[parse_inject("hang:rank=1,epoch=1,step=2")]
    )
    assert cfg.faults[0].kind == "hang" and cfg.collective_timeout_s == 5


@pytest.mark.parametrize(
    ("inject", "says"),
    [
        ("worker_crsh:rank=1,epoch=1", "did you mean 'worker_crash'?"),
        ("slow_node:rank=1,epoch=1,step=500", "step 500 never fires"),
        ("preempt:rank=1,epoch=1", "use topology: multi_node"),
        ("hang:rank=one,epoch=1", "rank='one' is not a number"),
    ],
)
def test_cli_one_line_before_ray(inject, says, capsys):
    assert main(["run", "--num-nodes", "2", "--num-epochs", "1", "--inject", inject]) == 2
    err = capsys.readouterr().err
    assert says in err
    assert "Traceback" not in err
    assert "ray" not in __import__("sys").modules or not __import__("ray").is_initialized()
