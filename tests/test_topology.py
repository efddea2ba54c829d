"""multi_node topology: one Ray node per simulated node, and losing one of them."""

from __future__ import annotations

import pytest

import raysim
from raysim.rundir import epoch_lines, rank_lines, read_lines

pytestmark = [pytest.mark.slow, pytest.mark.own_cluster]


def test_nodes_are_ray_nodes_and_losing_one_goes_on_with_fewer(without_shared_ray, tiny_config):
    # node-1 stalls 3 s at the start of epoch 3 (so the controller has taken in epoch 2's
    # reports and checkpoint), then its Ray node is removed; min_nodes 2 lets Ray Train go
    # on with 2 after waiting 5 s for a third.
    faults = [
        {"kind": "slow_node", "rank": 1, "epoch": 3, "step": 1, "seconds": 3.0},
        {"kind": "node_loss", "rank": 1, "epoch": 3, "step": 2},
    ]
    cfg = tiny_config(
        num_nodes=3, min_nodes=2, topology="multi_node", num_epochs=4, max_steps_per_epoch=3,
        checkpoint_every=1, max_failures=1, worker_start_timeout_s=5, faults=faults,
    )  # fmt: skip
    result = raysim.run(cfg, out=None)
    records = read_lines(result.run_dir / "metrics.jsonl")
    first = [r for r in rank_lines(records) if r["epoch"] == 1]
    assert sorted(r["node_id"] for r in first) == ["node-0", "node-1", "node-2"]
    assert len({r["ray_node_id"] for r in first}) == 3, "one Ray node per simulated node"
    assert [e["epoch"] for e in epoch_lines(records)] == [1, 2, 3, 4]
    assert [e["world_size"] for e in epoch_lines(records)] == [3, 3, 2, 2]
    assert result.summary["world_size_changes"] == [{"epoch": 3, "from": 3, "to": 2}]
    later = {r["node_id"] for r in rank_lines(records) if r["epoch"] >= 3}
    assert later == {"node-0", "node-2"}
    error = next(r for r in records if r["kind"] == "error")
    assert "node_loss" in [f["kind"] for f in error["faults"]]
    assert 0 < error["detect_s"] < 15  # 1.9–3.8 s measured
    recovered = next(r for r in records if r["kind"] == "recovered")
    assert recovered["epoch"] == 3 and recovered["recover_s"] > 5  # waited for the timeout
    assert all(e["checksums_match"] for e in epoch_lines(records))
    lost = next(n for n in result.summary["nodes"] if n["node_id"] == "node-1")
    assert lost["last_epoch"] == 2
