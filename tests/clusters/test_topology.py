"""multi_node topology: one Ray node per simulated node, and losing one of them, through
the `raysim run --dashboard` command as a user types it, console included; its embedded
dashboard serves the run while it goes, its Cluster page a head and one Ray node per
simulated node."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.error
from pathlib import Path

import pytest

from raysim.cluster import free_port
from raysim.cluster.standing import end_tree
from raysim.rundir import epoch_lines, rank_lines, read_lines
from tests.dashboard_pages import cluster_page_text, docs_script, get, seen_in_a_browser

pytestmark = [pytest.mark.slow, pytest.mark.own_cluster]

ROOT = Path(__file__).resolve().parents[2]
NODES = 3
RAY_NODES_SHOWN = f"TOTAL x {NODES + 1}"  # the Cluster page's count: the head and each node


def until_answered(ask, running: subprocess.Popen):
    """ask()'s first answer while the run goes (None if it ended first): an OSError (the
    dashboard not up yet, the token not written yet, an HTTP error) asks again."""
    while running.poll() is None:
        try:
            return ask()
        except OSError:
            time.sleep(0.5)
    return None


def refused_without_token(url: str) -> int:
    try:
        get(f"{url}/api/v0/nodes", token=None)
    except urllib.error.HTTPError as err:
        return err.code
    return 200


def dashboard_during_the_run(url: str, running: subprocess.Popen) -> dict:
    """What the embedded dashboard served while the run went: its answer without the token,
    the Cluster page (in headless Chromium) once the head and every node's Ray node are up,
    and the runs Ray Train's state API lists."""
    screens = docs_script()
    seen: dict = {"refused": until_answered(lambda: refused_without_token(url), running)}
    token = until_answered(screens.ray_token, running)

    def all_up() -> None:
        nodes = get(f"{url}/api/v0/nodes", token)["data"]["result"]["result"]
        if sum(n["state"] == "ALIVE" for n in nodes) <= NODES:
            raise OSError("not every node is up yet")

    def runs() -> list[str]:
        listed = get(f"{url}/api/train/v2/runs/v1", token)["train_runs"]
        if not listed:
            raise OSError("no run listed yet")
        return [r["name"] for r in listed]

    until_answered(all_up, running)
    if seen_in_a_browser():
        with screens.TokenProxy(url, token) as proxy:
            seen["cluster"] = cluster_page_text(screens, proxy.url, RAY_NODES_SHOWN)
    seen["runs"] = until_answered(runs, running)
    return seen


def check_cluster_page(text: str, ray_nodes: dict[str, str]) -> None:
    """A head and one Ray node per simulated node, each labelled with its name."""
    assert RAY_NODES_SHOWN in text, text[:600]
    assert text.count("(Head)") == 1, "one head"
    for node_id, ray_node_id in ray_nodes.items():
        assert f"ray.io/node-id: {ray_node_id} raysim-node: {node_id}" in text, node_id


def test_nodes_are_ray_nodes_and_losing_one_goes_on_with_fewer(without_shared_ray, tmp_path):
    # node-1 stalls 3 s at the start of epoch 2 (so the controller has taken in epoch 1's
    # reports and checkpoint), then its Ray node is removed; min_nodes 2 lets Ray Train go
    # on with 2 after waiting 3 s for a third, for epoch 2 again, the last.
    port = free_port()
    with (tmp_path / "console.txt").open("w") as console_file:
        running = subprocess.Popen(
            [sys.executable, "-m", "raysim.cli", "run", "--num-nodes", str(NODES),
             "--min-nodes", "2", "--topology", "multi_node", "--num-epochs", "2",
             "--max-steps-per-epoch", "3", "--image-size", "16", "--batch-size", "8",
             "--device", "cpu", "--checkpoint-every", "1", "--max-failures", "1",
             "--worker-start-timeout-s", "3", "--dashboard", "--dashboard-port", str(port),
             "--inject", "slow_node:rank=1,epoch=2,step=1,seconds=3",
             "--inject", "node_loss:rank=1,epoch=2,step=2",
             "--run-dir", str(tmp_path), "--run-name", "run"],
            cwd=ROOT, stdout=console_file, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
    try:
        seen = dashboard_during_the_run(f"http://127.0.0.1:{port}", running)
        running.wait(timeout=420)
    finally:
        if running.poll() is None:  # the command and its Ray nodes, by the pid it started as
            end_tree(running.pid)
    console = (tmp_path / "console.txt").read_text()
    assert running.returncode == 0, console[-4000:]
    run_dir = tmp_path / "run"
    records = read_lines(run_dir / "metrics.jsonl")
    summary = json.loads((run_dir / "summary.json").read_text())
    first = [r for r in rank_lines(records) if r["epoch"] == 1]
    assert sorted(r["node_id"] for r in first) == ["node-0", "node-1", "node-2"]
    assert len({r["ray_node_id"] for r in first}) == 3, "one Ray node per simulated node"
    assert [e["epoch"] for e in epoch_lines(records)] == [1, 2]
    assert [e["world_size"] for e in epoch_lines(records)] == [3, 2]
    assert summary["world_size_changes"] == [{"epoch": 2, "from": 3, "to": 2}]
    later = {r["node_id"] for r in rank_lines(records) if r["epoch"] >= 2}
    assert later == {"node-0", "node-2"}
    error = next(r for r in records if r["kind"] == "error")
    assert "node_loss" in [f["kind"] for f in error["faults"]]
    assert 0 < error["detect_s"] < 15  # 1.9–3.8 s measured
    recovered = next(r for r in records if r["kind"] == "recovered")
    assert recovered["epoch"] == 2 and recovered["recover_s"] > 3  # waited for the timeout
    assert all(e["checksums_match"] for e in epoch_lines(records))
    lost = next(n for n in summary["nodes"] if n["node_id"] == "node-1")
    assert lost["last_epoch"] == 1

    # The embedded dashboard (`--dashboard`) on 127.0.0.1 answered during the run, with
    # token authentication on; Ray Train's state API listed the run; the Cluster page showed
    # the head and each simulated node's Ray node under its label.
    assert f"raysim: Ray dashboard at http://127.0.0.1:{port}" in console
    assert seen["refused"] == 401, "token authentication stays on"
    assert seen["runs"] == ["run"]
    if "cluster" in seen:
        check_cluster_page(seen["cluster"], {r["node_id"]: r["ray_node_id"] for r in first})

    # The console: raysim's lines in the order things happened, none of the lost raylet's.
    assert "[state-dump]" not in console and "Raylet is terminated" not in console, console
    removed = "raysim: node_loss: node-1's Ray node removed at epoch 2, step 2"
    failed = "raysim: the worker group failed (rank "  # every rank: the group restarts
    story = ["epoch   1/2  nodes 3", removed, failed, "raysim: recovered: epoch 2",
             "epoch   2/2  nodes 2"]  # fmt: skip
    lines = console.splitlines()
    found = [next((i for i, line in enumerate(lines) if line.startswith(t)), None) for t in story]
    assert None not in found and found == sorted(found), console
    assert "node_loss on node-1, noticed after" in lines[found[2]]
    # ... and the one line saying where Ray's own account of the loss stays: the lost
    # node's raylet log, [state-dump]s and all.
    log = Path(re.search(r"Ray's own log of it stays in (\S+)$", lines[found[1]]).group(1))
    assert re.fullmatch(r"raylet\.\d+\.out", log.name) and "[state-dump]" in log.read_text()
