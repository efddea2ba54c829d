"""A standing simulated cluster: `raysim up` / `raysim down`.

`ray start --head` with raysim's device resource, the dashboard on loopback and Ray
Train's run tracking, so several runs (`raysim run --address auto`) share one cluster
and one dashboard, and no run pays Ray's cold start. Its facts are kept in
$RAYSIM_HOME/cluster.json (default ~/.raysim). `ray start --block` runs in a session of
its own and stays the parent of the node's processes, so `down` ends exactly what `up`
started: that pid and the processes below it, never every Ray on the host.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from raysim.cluster.env import ClusterError, check_port_free, free_port
from raysim.plan.resources import DEVICE_RESOURCE, DEVICE_UNITS
from raysim.procfs import descendants, is_running
from raysim.rundir import raysim_home

STATE_FILE = "cluster.json"


@dataclass(frozen=True)
class StandingCluster:
    address: str
    dashboard_url: str
    metrics_url: str
    temp_dir: str
    """Ray's temp dir for this cluster: its logs."""
    cpus: int
    pid: int = 0
    """`ray start --block`'s: the cluster's processes are it and those below it."""


def read_state() -> StandingCluster | None:
    """The standing cluster, if one is up (a stale record is ignored)."""
    path = raysim_home() / STATE_FILE
    if not path.exists():
        return None
    state = StandingCluster(**json.loads(path.read_text()))
    return state if is_running(state.pid) else None


READY = "Ray runtime started."
"""What `ray start` prints once the node is up."""


NO_DRAIN = {"RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0"}
"""On SIGTERM, `ray start` (Ray 2.60) first drains its node, up to 30 s, until no lease is
held; a run's detached actors (Ray Train's state actor, Ray Data's autoscaling
coordinator) hold theirs for the cluster's life, so a head that had run anything waited
out end_tree's grace and was killed. raysim's nodes serve nothing to drain: Ray's own
setting turns the wait off (a head with a run behind it then ends in about 2 s)."""


def start_ray_node(args: list[str], log_path: Path, env: dict[str, str] | None = None,
                   timeout_s: float = 300) -> int:  # fmt: skip
    """`ray start ARGS --block` in a session of its own, its output to log_path; its pid
    once Ray says the node started. The node's processes are that pid and those below it."""
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [ray_command(), "start", *args, "--block"], stdout=log, stderr=subprocess.STDOUT,
            env={**(os.environ if env is None else env), **NO_DRAIN}, start_new_session=True,
        )  # fmt: skip
    deadline = time.monotonic() + timeout_s
    while READY not in log_path.read_text(errors="replace"):
        if process.poll() is not None or time.monotonic() > deadline:
            end_tree(process.pid)
            tail = "\n".join(log_path.read_text(errors="replace").strip().splitlines()[-8:])
            raise ClusterError([f"`ray start` failed (exit {process.poll()}):\n{tail}"])
        time.sleep(0.2)
    return process.pid


def end_tree(*pids: int, grace_s: float = 10.0) -> int:
    """End processes raysim started and every process below them; how many there were.
    SIGTERM to each root first, whose own handler ends what it started (`ray start
    --block` ends its node in about 2 s so, and takes longer when its children are
    signalled beside it); then SIGTERM to what is left, then SIGKILL, each after half the
    grace period. The trees are read before the first signal: a child whose parent ends
    moves to init and is no longer found below it."""
    tree = [member for pid in pids for member in (pid, *descendants(pid))]
    for members in (pids, tree):
        for member in members:
            if is_running(member):
                _signal(member, signal.SIGTERM)
        deadline = time.monotonic() + grace_s / 2
        while any(is_running(member) for member in tree) and time.monotonic() < deadline:
            time.sleep(0.25)
    for member in tree:
        if is_running(member):
            _signal(member, signal.SIGKILL)
    return len(tree)


def _signal(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)


def ray_command() -> str:
    beside = Path(sys.executable).with_name("ray")
    found = str(beside) if beside.exists() else shutil.which("ray")
    if found is None:
        raise ClusterError(["the `ray` command is not installed; pip install 'ray[default]'"])
    return found


def up(cpus: int | None = None, dashboard_port: int = 8265) -> StandingCluster:
    """Start the standing cluster on 127.0.0.1 and record it."""
    running = read_state()
    if running is not None:
        raise ClusterError(
            [f"a raysim cluster is already up at {running.address}; use it with "
             "--address auto, or `raysim down` first"]
        )  # fmt: skip
    if dashboard_port:
        check_port_free(dashboard_port, "Ray dashboard", "--dashboard-port")
    cpus = cpus or len(os.sched_getaffinity(0))
    gcs_port, metrics_port = free_port(), free_port()
    dashboard_port = dashboard_port or free_port()
    temp_dir = tempfile.mkdtemp(prefix="raysim-", dir="/tmp")  # short: socket paths
    env = {
        **os.environ,
        "RAY_TRAIN_ENABLE_STATE_TRACKING": "1",
        "RAY_metrics_report_interval_ms": "2000",  # metrics show within seconds
    }
    pid = start_ray_node(
        ["--head", f"--port={gcs_port}", "--node-ip-address=127.0.0.1",
         f"--temp-dir={temp_dir}", f"--num-cpus={cpus}",
         f"--resources={json.dumps({DEVICE_RESOURCE: DEVICE_UNITS})}",
         "--include-dashboard=true", "--dashboard-host=127.0.0.1",
         f"--dashboard-port={dashboard_port}", f"--metrics-export-port={metrics_port}",
         "--disable-usage-stats"],
        Path(temp_dir) / "ray_start.log", env,
    )  # fmt: skip
    state = StandingCluster(
        address=f"127.0.0.1:{gcs_port}",
        dashboard_url=f"http://127.0.0.1:{dashboard_port}",
        metrics_url=f"http://127.0.0.1:{metrics_port}/metrics",
        temp_dir=temp_dir,
        cpus=cpus,
        pid=pid,
    )
    raysim_home().mkdir(parents=True, exist_ok=True)
    (raysim_home() / STATE_FILE).write_text(json.dumps(asdict(state), indent=2))
    return state


def down() -> StandingCluster | None:
    """End the standing cluster's processes; None if none was up."""
    path = raysim_home() / STATE_FILE
    if not path.exists():
        return None
    state = StandingCluster(**json.loads(path.read_text()))
    end_tree(state.pid)
    path.unlink()
    return state
