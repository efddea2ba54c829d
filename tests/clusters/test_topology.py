"""multi_node topology: one Ray node per simulated node, and losing one of them, through
the `raysim run` command as a user types it, console included."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from raysim.rundir import epoch_lines, rank_lines, read_lines

pytestmark = [pytest.mark.slow, pytest.mark.own_cluster]

ROOT = Path(__file__).resolve().parents[2]


def test_nodes_are_ray_nodes_and_losing_one_goes_on_with_fewer(without_shared_ray, tmp_path):
    # node-1 stalls 3 s at the start of epoch 2 (so the controller has taken in epoch 1's
    # reports and checkpoint), then its Ray node is removed; min_nodes 2 lets Ray Train go
    # on with 2 after waiting 5 s for a third, for epoch 2 again and epoch 3.
    done = subprocess.run(
        [sys.executable, "-m", "raysim.cli", "run", "--num-nodes", "3", "--min-nodes", "2",
         "--topology", "multi_node", "--num-epochs", "3", "--max-steps-per-epoch", "3",
         "--image-size", "16", "--batch-size", "8", "--device", "cpu",
         "--checkpoint-every", "1", "--max-failures", "1", "--worker-start-timeout-s", "5",
         "--inject", "slow_node:rank=1,epoch=2,step=1,seconds=3",
         "--inject", "node_loss:rank=1,epoch=2,step=2",
         "--run-dir", str(tmp_path), "--run-name", "run"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=420,
    )  # fmt: skip
    console = done.stdout
    assert done.returncode == 0, console[-4000:]
    run_dir = tmp_path / "run"
    records = read_lines(run_dir / "metrics.jsonl")
    summary = json.loads((run_dir / "summary.json").read_text())
    first = [r for r in rank_lines(records) if r["epoch"] == 1]
    assert sorted(r["node_id"] for r in first) == ["node-0", "node-1", "node-2"]
    assert len({r["ray_node_id"] for r in first}) == 3, "one Ray node per simulated node"
    assert [e["epoch"] for e in epoch_lines(records)] == [1, 2, 3]
    assert [e["world_size"] for e in epoch_lines(records)] == [3, 2, 2]
    assert summary["world_size_changes"] == [{"epoch": 2, "from": 3, "to": 2}]
    later = {r["node_id"] for r in rank_lines(records) if r["epoch"] >= 2}
    assert later == {"node-0", "node-2"}
    error = next(r for r in records if r["kind"] == "error")
    assert "node_loss" in [f["kind"] for f in error["faults"]]
    assert 0 < error["detect_s"] < 15  # 1.9–3.8 s measured
    recovered = next(r for r in records if r["kind"] == "recovered")
    assert recovered["epoch"] == 2 and recovered["recover_s"] > 5  # waited for the timeout
    assert all(e["checksums_match"] for e in epoch_lines(records))
    lost = next(n for n in summary["nodes"] if n["node_id"] == "node-1")
    assert lost["last_epoch"] == 1

    # The console: raysim's lines in the order things happened, none of the lost raylet's.
    assert "[state-dump]" not in console and "Raylet is terminated" not in console, console
    removed = "raysim: node_loss: node-1's Ray node removed at epoch 2, step 2"
    failed = "raysim: the worker group failed (rank "  # every rank: the group restarts
    story = ["epoch   1/3  nodes 3", removed, failed, "raysim: recovered: epoch 2",
             "epoch   2/3  nodes 2", "epoch   3/3  nodes 2"]  # fmt: skip
    lines = console.splitlines()
    found = [next((i for i, line in enumerate(lines) if line.startswith(t)), None) for t in story]
    assert None not in found and found == sorted(found), console
    assert "node_loss on node-1, noticed after" in lines[found[2]]
    # ... and the one line saying where Ray's own account of the loss stays: the lost
    # node's raylet log, [state-dump]s and all.
    log = Path(re.search(r"Ray's own log of it stays in (\S+)$", lines[found[1]]).group(1))
    assert re.fullmatch(r"raylet\.\d+\.out", log.name) and "[state-dump]" in log.read_text()
