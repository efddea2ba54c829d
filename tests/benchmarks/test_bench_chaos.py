"""The chaos soak's schedule and checks, on made-up records (the soak itself is hours of
Ray: benchmarks/bench_chaos.py, BENCHMARKS.md)."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import bench_chaos  # noqa: E402

KINDS = list(bench_chaos.FAULT_KINDS)


def test_the_schedule_is_the_seeds_with_every_kind_one_an_epoch_and_node_loss_last():
    faults = bench_chaos.schedule(7, 30, 200, 3, KINDS)
    assert faults == bench_chaos.schedule(7, 30, 200, 3, KINDS)
    assert faults != bench_chaos.schedule(8, 30, 200, 3, KINDS)
    assert len(faults) == 30 and {f["kind"] for f in faults} == set(KINDS)
    epochs = [f["epoch"] for f in faults]
    assert epochs == sorted(set(epochs)) and epochs[0] >= 2 and epochs[-1] <= 200
    assert [f["kind"] for f in faults].count("node_loss") == 1
    assert faults[-1]["kind"] == "node_loss"
    assert all(0 <= f["rank"] < 3 and 1 <= f["step"] <= bench_chaos.STEPS for f in faults)


def test_a_schedule_that_cannot_fit_is_refused_naming_the_fix():
    with pytest.raises(SystemExit, match="use more --minutes or fewer --faults"):
        bench_chaos.schedule(0, 30, 20, 3, KINDS)
    with pytest.raises(SystemExit, match="use --faults 7 or more"):
        bench_chaos.schedule(0, 3, 20, 3, KINDS)


def epoch(number, world, checksum):
    return {"kind": "epoch", "epoch": number, "world_size": world, "param_checksum": checksum}


def ranks(number, nodes):
    return [{"kind": "rank", "epoch": number, "node_id": node} for node in nodes]


def test_an_epoch_twice_or_a_node_missing_is_found():
    good = [*ranks(1, ["node-0", "node-1"]), epoch(1, 2, "a"),
            *ranks(2, ["node-0", "node-1"]), epoch(2, 2, "b")]  # fmt: skip
    assert bench_chaos.recorded_once(good, 2)["ok"]
    twice = [*good, *ranks(2, ["node-0"]), epoch(2, 2, "b")]
    assert not bench_chaos.recorded_once(twice, 2)["ok"]
    missing = [*ranks(1, ["node-0"]), epoch(1, 2, "a")]
    assert bench_chaos.recorded_once(missing, 1)["problems"] == [
        "epoch 1: rank lines from ['node-0'], world size 2"
    ]


def test_weights_compare_on_full_size_epochs_only():
    reference = [epoch(1, 3, "a"), epoch(2, 3, "b"), epoch(3, 3, "c")]
    same = bench_chaos.same_weights(reference, reference, 3)
    assert same["ok"] and same["final_weights_equal"] is True
    shrunk = bench_chaos.same_weights([epoch(1, 3, "a"), epoch(2, 2, "x"), epoch(3, 2, "y")],
                                      reference, 3)  # fmt: skip
    assert shrunk["ok"] and shrunk["epochs_compared"] == 1
    assert shrunk["final_weights_equal"] is None and shrunk["fewer_nodes_epochs"] == [2, 3]
    wrong = bench_chaos.same_weights([epoch(1, 3, "a"), epoch(2, 3, "z"), epoch(3, 3, "c")],
                                     reference, 3)  # fmt: skip
    assert not wrong["ok"] and wrong["differ"] == [2] and wrong["final_weights_equal"] is False
