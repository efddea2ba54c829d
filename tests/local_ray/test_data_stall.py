"""A slow input pipeline on one node is named as input, not compute (on a real run: in
test_emulation, whose straggler's run also stalls its input for an epoch)."""

from __future__ import annotations

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
