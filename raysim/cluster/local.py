"""The simulated cluster: an embedded local Ray with the device resource, or an existing one."""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import threading
from dataclasses import dataclass
from typing import Any

from raysim.cluster.env import (
    ClusterError,
    check_port_free,
    free_port,
    loopback_gcs_env,
    scoped_env,
)
from raysim.cluster.join import join, ray_logging_kwargs
from raysim.config.schema import ExperimentConfig
from raysim.plan.resources import DEVICE_RESOURCE, NODE_LABEL, ResourcePlan
from raysim.procfs import command_line, descendants


def dashboard_kwargs(port: int) -> dict:
    """ray.init arguments for the dashboard on loopback, with Train's run tracking on and
    the Prometheus export on a known port (raysim's own metrics appear there)."""
    if port:
        check_port_free(port, "Ray dashboard", "--dashboard-port")
    # Read by Ray Train in this process when the trainer is built: the run's state in
    # Ray's state API (/api/train/v2/runs/v1).
    os.environ["RAY_TRAIN_ENABLE_STATE_TRACKING"] = "1"
    return {
        "include_dashboard": True,
        "dashboard_host": "127.0.0.1",
        "dashboard_port": port or free_port(),
        "_metrics_export_port": free_port(),
    }


def dashboard_port_of(cfg: ExperimentConfig) -> int | None:
    """The embedded Ray's dashboard port (0: a free one), or None for no dashboard."""
    return cfg.dashboard_port if cfg.dashboard and cfg.address is None else None


TRAIN_RUNS_API = "/api/train/v2/runs/v1"
"""Ray Train's run state (Ray 2.60 has no Train page in the open-source dashboard)."""


def dashboard_banner(dashboard_url: str, metrics_url: str | None) -> str:
    """What a user finds where: the dashboard's pages, Train's state, raysim's figures."""
    token = os.environ.get("RAY_AUTH_TOKEN_PATH", "~/.ray/auth_token")
    lines = [
        f"raysim: Ray dashboard at {dashboard_url} (token authentication: paste the token "
        f"from {token} when the page asks; `ray get-auth-token` prints it)",
        "        Jobs: the run's driver, and on its page Ray's task timeline (Download trace "
        "file); Actors: Ray Train's controller and workers",
        "        Cluster: the Ray nodes, with raysim_device under Logical Resources (Expand); "
        "Overview: the raysim_device in use",
        "        no Train page in Ray 2.60's dashboard: the run's state is at "
        f'{dashboard_url}{TRAIN_RUNS_API} (HTTP: curl -H "Authorization: Bearer '
        '$(ray get-auth-token)" ...)',
        "        raysim's figures are not in the dashboard (its Metrics page needs Prometheus "
        "and Grafana): tensorboard --logdir runs/, raysim trace RUN_DIR (trace.json), "
        "MLflow with tracking.mlflow",
    ]
    if metrics_url:
        lines.append(f"        raysim_* gauges for Prometheus at {metrics_url}")
    return "\n".join(lines)


@dataclass(frozen=True)
class Drained:
    """A Ray node drained for a preemption (SimCluster.preempt)."""

    index: int
    ray_node_id: str
    node: Any


class SimCluster:
    """Context manager: starts (or joins) Ray on enter; stops only a Ray it started.

    topology multi_node: the started Ray is a head with no CPUs (the driver and Ray Train's
    controller live there) plus one Ray node per simulated node, so a node can be lost.
    """

    def __init__(
        self,
        plan: ResourcePlan,
        address: str | None = None,
        verbose: bool = False,
        dashboard_port: int | None = None,
    ):
        """dashboard_port: None runs Ray without its dashboard; 0 picks a free port."""
        self.plan = plan
        self.address = address
        self.verbose = verbose
        self.dashboard_port = dashboard_port
        self.dashboard_url: str | None = None
        self.metrics_url: str | None = None
        self.owned = False
        self.local_cluster = None
        self.nodes: list = []
        """multi_node: the simulated nodes' Ray nodes, by node index."""
        self.retired: list = []
        """Drained Ray nodes whose simulated node has a new one (preempt)."""

    def __enter__(self) -> SimCluster:
        import ray

        if self.plan.multi_node and ray.is_initialized():
            raise ClusterError(
                ["topology: multi_node starts a Ray cluster of its own, but this process is "
                 "already connected to Ray: call ray.shutdown() first, or use topology: "
                 "single_host"]
            )  # fmt: skip
        try:
            if not ray.is_initialized() and self.address is None:
                with scoped_env(loopback_gcs_env()):
                    ray.init(**self._init_kwargs())
                    self.owned = True
                    if self.plan.multi_node:
                        self._add_nodes()
            elif not ray.is_initialized():
                join(self.address, **ray_logging_kwargs(self.verbose))
                self.owned = True
            self.check_resources(ray.cluster_resources())
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _init_kwargs(self) -> dict:
        kwargs = {
            "address": "local",  # never join a `ray start` cluster by accident
            "num_cpus": 0 if self.plan.multi_node else self.plan.cluster_cpus,
            "resources": dict(self.plan.cluster_resources),
            "include_dashboard": False,
            "_node_ip_address": "127.0.0.1",
            **ray_logging_kwargs(self.verbose),
        }
        if self.dashboard_port is not None:
            kwargs.update(dashboard_kwargs(self.dashboard_port))
            self.dashboard_url = f"http://127.0.0.1:{kwargs['dashboard_port']}"
            self.metrics_url = f"http://127.0.0.1:{kwargs['_metrics_export_port']}/metrics"
        return kwargs

    def _add_nodes(self) -> None:
        """One loopback Ray node per simulated node, labelled with its name, joined to the
        head this process started, through Ray's own multi-node test cluster helper."""
        import ray
        from ray.cluster_utils import Cluster

        self.local_cluster = Cluster(initialize_head=False)
        head = ray._private.worker._global_node
        self.local_cluster.head_node = head
        self.local_cluster.redis_address = head.redis_address
        for index in range(self.plan.num_workers):
            self.nodes.append(self._start_node(index))

    def _start_node(self, index: int):
        """A Ray node for simulated node `index`: the planned resources, its label."""
        resources = dict(self.plan.node_resources or {})
        cpus, gpus = int(resources.pop("CPU")), int(resources.pop("GPU", 0))
        # Ray sets a SIGTERM hook for the node, which Python allows on the main thread only;
        # a preemption's replacement starts on the driver's watch thread, so it goes
        # without (this cluster's exit ends it, or else the exit hook set here).
        on_main = threading.current_thread() is threading.main_thread()
        self.local_cluster._shutdown_at_exit = on_main
        try:
            node = self.local_cluster.add_node(
                num_cpus=cpus, num_gpus=gpus, resources=resources,
                labels={NODE_LABEL: f"node-{index}"}, node_ip_address="127.0.0.1",
                include_dashboard=False,
            )  # fmt: skip
        finally:
            self.local_cluster._shutdown_at_exit = True
        if not on_main:
            atexit.register(node.kill_all_processes, check_alive=False, allow_graceful=False)
        return node

    def remove_node(self, index: int) -> str | None:
        """Take simulated node `index` away as a host that dies: every process of its Ray
        node is killed at once, with no clean-up. Returns its raylet's log file, where its
        last lines stay (the folder of Ray's logs if unknown; None if already gone)."""
        node = self.nodes[index]
        self.nodes[index] = None
        return self._take_away(node)

    def _take_away(self, node) -> str | None:
        if node is None or node not in self.local_cluster.worker_nodes:
            return None
        log = raylet_log(node) or node.get_logs_dir_path()
        kill_at_once(node)
        self.local_cluster.remove_node(node, allow_graceful=False)  # reaps, forgets it
        return log

    def preempt(self, index: int, deadline_unix: float, message: str) -> Drained:
        """Drain simulated node `index`'s Ray node through Ray Core for a preemption at
        deadline_unix (the GCS's DrainNode, as Ray's autoscaler sends it for a reclaimed
        spot instance), and start a new Ray node for the simulated node, as a cluster's
        autoscaler does (the drain keeps Ray from placing anything new on the old one)."""
        import ray
        from ray.core.generated import autoscaler_pb2

        node = self.nodes[index]
        gcs = ray._raylet.GcsClient(address=self.local_cluster.gcs_address)
        accepted, why = gcs.drain_node(
            node.node_id,
            autoscaler_pb2.DrainNodeReason.Value("DRAIN_NODE_REASON_PREEMPTION"),
            message,
            int(deadline_unix * 1000),
        )
        if not accepted:
            raise ClusterError([f"Ray refused to drain node-{index}'s Ray node: {why}"])
        self.retired.append(node)
        self.nodes[index] = self._start_node(index)
        return Drained(index, node.node_id, node)

    def reclaim(self, drained: Drained) -> str | None:
        """The drained node's host goes at its deadline (the cloud's part: Ray Core's drain
        never ends a node). Returns its raylet's log (None: already gone)."""
        if drained.node in self.retired:
            self.retired.remove(drained.node)
        return self._take_away(drained.node)

    def check_resources(self, available: dict[str, float]) -> None:
        """Ray would wait forever for a missing resource; fail with the fix instead."""
        problems = []
        for name, per_worker in self.plan.resources_per_worker.items():
            needed = per_worker * self.plan.num_workers
            have = available.get(name, 0.0)
            if have + 1e-9 < needed:
                problems.append(
                    f"the Ray cluster has {have:g} '{name}' but {self.plan.num_workers} nodes "
                    f"need {needed:g}; {_fix_for(name)}"
                )
        if problems:
            raise ClusterError(problems)

    def __exit__(self, *exc) -> None:
        import ray

        for node in [*self.nodes, *self.retired]:
            self._take_away(node)
        self.nodes, self.retired = [None] * len(self.nodes), []
        if self.owned and ray.is_initialized():
            ray.shutdown()
        self.owned = False


def raylet_log(node) -> str | None:
    """The file a Ray node's raylet logs to (raylet.<n>.out in the session's logs), from
    the raylet's own arguments."""
    from ray._private.ray_constants import PROCESS_TYPE_RAYLET

    for info in node.all_processes.get(PROCESS_TYPE_RAYLET, []):
        for arg in command_line(info.process.pid):
            if arg.startswith("--stdout_filepath="):
                return arg.partition("=")[2]
    return None


def kill_at_once(node) -> None:
    """SIGKILL a Ray node's processes together, as a host that dies: Ray's agents and
    workers (the raylet's children), its log monitor, the raylet last. Ray's
    Cluster.remove_node kills the raylet first, and its two agents live on for a moment
    to send every driver "Raylet is terminated" with the raylet's last 20 log lines
    ([state-dump]s and all); a dead host sends nothing, and those lines stay in its log."""
    from ray._private.ray_constants import PROCESS_TYPE_RAYLET

    raylets = [info.process.pid for info in node.all_processes.get(PROCESS_TYPE_RAYLET, [])]
    others = [
        info.process.pid
        for kind, infos in node.all_processes.items()
        if kind != PROCESS_TYPE_RAYLET
        for info in infos
    ]
    for pid in [*(p for r in raylets for p in descendants(r)), *others, *raylets]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _fix_for(resource: str) -> str:
    if resource == DEVICE_RESOURCE:
        return (
            f"start the cluster with ray start --head --resources "
            f"'{{\"{DEVICE_RESOURCE}\": 10000}}' (the simulated device)"
        )
    if resource == "CPU":
        return "use fewer num_nodes, set cpus, or add CPUs to the cluster"
    return "lower gpu_fraction or num_nodes, or add GPUs to the cluster"
