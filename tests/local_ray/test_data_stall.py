"""A slow input pipeline on one node is named as input, not compute."""

from __future__ import annotations

import pytest

import raysim
from raysim.config import load_config, parse_inject
from raysim.console.lines import epoch_line
from raysim.record.aggregate import slowest_cause


def report(rank, data_wait, allreduce_wait):
    return {"rank": rank, "data_wait_s_per_step": data_wait,
            "allreduce_wait_s_per_step": allreduce_wait}  # fmt: skip


def test_late_for_its_input_or_its_compute():
    # node-1 waited 0.5 s a step for data and reached the all-reduce 0.5 s after node-0
    assert slowest_cause([report(0, 0.001, 0.51), report(1, 0.5, 0.01)], 1) == "input"
    # the same lateness with no wait for data: its compute
    assert slowest_cause([report(0, 0.001, 0.51), report(1, 0.001, 0.01)], 1) == "compute"
    assert slowest_cause([report(0, 0.001, 0.51), {"rank": 1}], 1) is None
    assert slowest_cause([report(0, 0.0, 0.0), report(1, 0.0, 0.0)], None) is None


def test_the_epoch_line_says_input():
    epoch = {"epoch": 2, "world_size": 2, "slowest_rank": 1, "slowest_cause": "input"}
    assert epoch_line(epoch, 3).endswith("slowest node-1 (input)")


@pytest.mark.slow
def test_a_data_stall_is_named_as_input(shared_ray, tmp_path):
    cfg = load_config(
        num_nodes=2, num_epochs=3, max_steps_per_epoch=4, image_size=16, device="cpu",
        run_dir=str(tmp_path), run_name="stall",
        faults=[parse_inject("data_stall:rank=1,epoch=2,step=1,seconds=0.5")],
    )  # fmt: skip
    result = raysim.run(cfg, out=None)
    stalled = result.epochs[1]
    assert (stalled["slowest_rank"], stalled["slowest_cause"]) == (1, "input")
    assert stalled["data_wait_s_per_step"] > 0.5 / 2 * 0.9, "node-1's 0.5 s, averaged over 2"
    assert result.epochs[2].get("slowest_cause") != "input" or result.epochs[2]["slowest_rank"] != 1
    (fault,) = result.summary["faults"]
    assert (fault["kind"], fault["rank"], fault["lost_steps"]) == ("data_stall", 1, 0)
    assert fault["went_on"] == "no failure: the run went on"
    assert 0 < fault["detected_after_s"] < 30, "told with epoch 2's line"
