"""A standing simulated cluster: `raysim up` / `raysim down`.

`ray start --head` with raysim's device resource, the dashboard on loopback and Ray
Train's run tracking, so several runs (`raysim run --address auto`) share one cluster
and one dashboard, and no run pays Ray's cold start. Its facts are kept in
$RAYSIM_HOME/cluster.json (default ~/.raysim); `down` ends exactly the processes
started for it, found by the cluster's own temp dir, never every Ray on the host.
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
from raysim.rundir import raysim_home

STATE_FILE = "cluster.json"


@dataclass(frozen=True)
class StandingCluster:
    address: str
    dashboard_url: str
    metrics_url: str
    temp_dir: str
    """Ray's temp dir for this cluster: logs, and how `down` finds its processes."""
    cpus: int


def read_state() -> StandingCluster | None:
    """The standing cluster, if one is up (a stale record is ignored)."""
    path = raysim_home() / STATE_FILE
    if not path.exists():
        return None
    state = StandingCluster(**json.loads(path.read_text()))
    return state if processes_of(state.temp_dir) else None


def processes_of(temp_dir: str) -> list[int]:
    """Pids whose command line names this cluster's temp dir: GCS, raylet, agents, workers."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
        except OSError:  # ended meanwhile
            continue
        if temp_dir in cmdline:
            pids.append(int(entry.name))
    return pids


def end_processes(temp_dir: str, grace_s: float = 10.0) -> int:
    """SIGTERM the cluster's processes, SIGKILL what is left after the grace period."""
    started = processes_of(temp_dir)
    for pid in started:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while processes_of(temp_dir) and time.monotonic() < deadline:
        time.sleep(0.5)
    for pid in processes_of(temp_dir):
        _signal(pid, signal.SIGKILL)
    return len(started)


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
    started = subprocess.run(
        [ray_command(), "start", "--head", f"--port={gcs_port}",
         "--node-ip-address=127.0.0.1", f"--temp-dir={temp_dir}", f"--num-cpus={cpus}",
         f"--resources={json.dumps({DEVICE_RESOURCE: DEVICE_UNITS})}",
         "--include-dashboard=true", "--dashboard-host=127.0.0.1",
         f"--dashboard-port={dashboard_port}", f"--metrics-export-port={metrics_port}",
         "--disable-usage-stats"],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    if started.returncode != 0:
        end_processes(temp_dir)
        tail = "\n".join(started.stderr.strip().splitlines()[-8:])
        raise ClusterError([f"`ray start` failed (exit {started.returncode}):\n{tail}"])
    state = StandingCluster(
        address=f"127.0.0.1:{gcs_port}",
        dashboard_url=f"http://127.0.0.1:{dashboard_port}",
        metrics_url=f"http://127.0.0.1:{metrics_port}/metrics",
        temp_dir=temp_dir,
        cpus=cpus,
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
    end_processes(state.temp_dir)
    path.unlink()
    return state
