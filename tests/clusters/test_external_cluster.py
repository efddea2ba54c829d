"""The same experiment on an existing Ray cluster, joined by address.

The cluster is a separate `ray start --block` head, then two nodes joined to it, with
their own temp dir; the test ends exactly those processes (each `ray start` by its pid,
and the processes below it), never Ray's own stop-everything command, which would also
end the suite's shared Ray.
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
COMMON = ["--num-cpus=1", "--num-gpus=0", "--node-ip-address=127.0.0.1", "--disable-usage-stats"]
WITH_THE_DEVICE = '--resources={"raysim_device": 10000}'


class ExternalCluster:
    """A Ray cluster on loopback, 1 CPU a node: a head without the simulated device (as a
    user's own head may be), then the nodes added with it."""

    def __init__(self):
        self.temp_dir = tempfile.mkdtemp(prefix="rsx", dir="/tmp")
        self.address = f"127.0.0.1:{free_port()}"
        self.pids: list[int] = []

    def start_head(self) -> None:
        port = self.address.rsplit(":", 1)[1]
        self._start(["--head", f"--port={port}", f"--temp-dir={self.temp_dir}",
                     "--include-dashboard=false"], "head")  # fmt: skip

    def add_node_with_the_device(self) -> None:
        self._start([f"--address={self.address}", WITH_THE_DEVICE], f"node{len(self.pids)}")

    def _start(self, args: list[str], name: str) -> None:
        log = Path(self.temp_dir) / f"{name}.log"
        self.pids.append(start_ray_node([*args, *COMMON], log, TOKEN_MODE, timeout_s=120))

    def end(self) -> None:
        end_tree(*self.pids)


@pytest.fixture
def external_cluster():
    """Its head, up; the test adds the nodes with the device."""
    cluster = ExternalCluster()
    try:
        cluster.start_head()
        yield cluster
    finally:
        cluster.end()


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


def run_on(address: str, tmp_path: Path, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "raysim.cli", "run", "--address", address, "--num-nodes", "2",
         "--device", "cpu", "--run-dir", str(tmp_path), *flags],
        cwd=ROOT, capture_output=True, text=True, timeout=400, env=TOKEN_MODE,
    )  # fmt: skip


DEVICE_NODES_AND_JOBS = (
    "[[n['NodeID'] for n in ray.nodes() if n['Alive'] and 'raysim_device' in n['Resources']],"
    " len(ray._private.state.jobs())]"
)
"""The alive Ray nodes with the device, and the driver connections (jobs) so far."""


def test_runs_on_an_existing_cluster_once_nodes_with_the_device_join(external_cluster, tmp_path):
    # The head alone: no node has the device, which Ray would wait for forever.
    done = run_on(external_cluster.address, tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "raysim_device" in done.stderr and "ray start --head --resources" in done.stderr

    # Two nodes with it join; the run places one simulated node on each.
    external_cluster.add_node_with_the_device()
    external_cluster.add_node_with_the_device()
    node_ids, jobs_before = ask_cluster(external_cluster.address, DEVICE_NODES_AND_JOBS)
    assert len(node_ids) == 2
    tiny = ["--num-epochs", "1", "--image-size", "16", "--batch-size", "8",
            "--max-steps-per-epoch", "3", "--run-name", "ext"]  # fmt: skip
    done = run_on(external_cluster.address, tmp_path, *tiny)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    ranks = [r for r in read_lines(tmp_path / "ext" / "metrics.jsonl") if r["kind"] == "rank"]
    assert {r["rank"] for r in ranks} == {0, 1}
    assert {r["ray_node_id"] for r in ranks} == set(node_ids), "one simulated node per Ray node"
    assert processes_naming(external_cluster.temp_dir), (
        "the cluster outlives the run: raysim only joined it"
    )
    # Every driver connection is a job: the run's, and this question's.
    drivers = ask_cluster(external_cluster.address, "len(ray._private.state.jobs())")
    assert drivers - jobs_before == 2, f"{drivers - jobs_before - 1} connections for one run"


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
