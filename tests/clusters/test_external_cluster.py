"""The same experiment on an existing Ray cluster, joined by address.

The cluster is a separate `ray start --block` head plus a second node, with their own
temp dir; the test ends exactly those processes (each `ray start` by its pid, and the
processes below it), never Ray's own stop-everything command, which would also end the
suite's shared Ray.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from raysim.cluster import free_port
from raysim.cluster.standing import end_tree, start_ray_node
from raysim.rundir import read_lines
from tests.ray_nodes import processes_naming

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
# Ray 2.60's `ray start` turns token authentication on; a process joining by address
# sends the token (~/.ray/auth_token) only in token mode, as a user must set it too.
TOKEN_MODE = {**os.environ, "RAY_AUTH_MODE": "token"}


@pytest.fixture
def external_cluster():
    """A two-node Ray cluster on loopback: 1 CPU and the simulated device on each node."""
    temp_dir = tempfile.mkdtemp(prefix="rsx", dir="/tmp")
    port = free_port()
    address = f"127.0.0.1:{port}"
    env = TOKEN_MODE
    common = [
        "--num-cpus=1", "--num-gpus=0", '--resources={"raysim_device": 10000}',
        "--disable-usage-stats",
    ]  # fmt: skip
    nodes = []
    try:
        nodes.append(start_ray_node(
            ["--head", f"--port={port}", "--node-ip-address=127.0.0.1",
             f"--temp-dir={temp_dir}", "--include-dashboard=false", *common],
            Path(temp_dir) / "head.log", env, timeout_s=120,
        ))  # fmt: skip
        nodes.append(start_ray_node(
            [f"--address={address}", "--node-ip-address=127.0.0.1", *common],
            Path(temp_dir) / "second.log", env, timeout_s=120,
        ))  # fmt: skip
        yield address, temp_dir
    finally:
        for node in reversed(nodes):
            end_tree(node)


def ask_cluster(address: str, expression: str):
    """A JSON value computed by a separate driver connected to the cluster."""
    listing = subprocess.run(
        [sys.executable, "-c",
         f"import json, ray; ray.init(address={address!r}, logging_level='ERROR');"
         f"print(json.dumps({expression}))"],
        check=True, capture_output=True, text=True, timeout=120,
        env=TOKEN_MODE,
    )  # fmt: skip
    return json.loads(listing.stdout.strip().splitlines()[-1])


def cluster_node_ids(address: str) -> set[str]:
    return set(ask_cluster(address, "[n['NodeID'] for n in ray.nodes() if n['Alive']]"))


def test_runs_on_an_existing_two_node_cluster(external_cluster, tmp_path):
    address, temp_dir = external_cluster
    node_ids = cluster_node_ids(address)
    assert len(node_ids) == 2
    done = subprocess.run(
        [sys.executable, "-m", "raysim.cli", "run", "--address", address, "--num-nodes", "2",
         "--num-epochs", "1", "--image-size", "16", "--batch-size", "8", "--device", "cpu",
         "--max-steps-per-epoch", "3", "--run-dir", str(tmp_path), "--run-name", "ext"],
        cwd=ROOT, capture_output=True, text=True, timeout=400, env=TOKEN_MODE,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    ranks = [r for r in read_lines(tmp_path / "ext" / "metrics.jsonl") if r["kind"] == "rank"]
    assert {r["rank"] for r in ranks} == {0, 1}
    assert {r["ray_node_id"] for r in ranks} == node_ids, "one simulated node per Ray node"
    assert processes_naming(temp_dir), "the cluster outlives the run: raysim only joined it"
    # Every driver connection is a job: the node listing, the run, and this question.
    drivers = ask_cluster(address, "len(ray._private.state.jobs())")
    assert drivers == 3, f"{drivers - 2} connections for one run; raysim should join once"


def test_a_cluster_without_the_device_resource_is_a_clear_error(tmp_path):
    temp_dir = tempfile.mkdtemp(prefix="rsx", dir="/tmp")
    port = free_port()
    head = start_ray_node(
        ["--head", f"--port={port}", "--node-ip-address=127.0.0.1", f"--temp-dir={temp_dir}",
         "--include-dashboard=false", "--num-cpus=2", "--disable-usage-stats"],
        Path(temp_dir) / "head.log", TOKEN_MODE, timeout_s=120,
    )  # fmt: skip
    try:
        done = subprocess.run(
            [sys.executable, "-m", "raysim.cli", "run", "--address", f"127.0.0.1:{port}",
             "--num-nodes", "2", "--device", "cpu", "--run-dir", str(tmp_path)],
            cwd=ROOT, capture_output=True, text=True, timeout=200, env=TOKEN_MODE,
        )  # fmt: skip
    finally:
        end_tree(head)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "raysim_device" in done.stderr and "ray start --head --resources" in done.stderr


def test_an_address_where_nothing_listens_fails_at_once(tmp_path):
    port = free_port()
    done = subprocess.run(
        [sys.executable, "-m", "raysim.cli", "run", "--address", f"127.0.0.1:{port}",
         "--num-nodes", "1", "--device", "cpu", "--run-dir", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"nothing answers at address '127.0.0.1:{port}'" in done.stderr
    assert "raysim up" in done.stderr
