"""The simulated cluster: an embedded local Ray with the device resource, or an existing one.

The only module (with experiment.py) that touches Ray's process lifecycle.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket

from raysim.config import ConfigError, ExperimentConfig
from raysim.plan import DEVICE_RESOURCE, NODE_LABEL, Hardware, ResourcePlan, detect_hardware


class ClusterError(ConfigError):
    """The Ray cluster cannot host the plan; the message says what to start or change."""


def _quiet_ray_env() -> None:
    # Without the dashboard, Ray Train's placement-group cleaner logs a failed
    # state query every second; raysim's console follows metrics.jsonl instead.
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")


@contextlib.contextmanager
def scoped_env(values: dict[str, str]):
    """Environment variables set for a block (processes started in it inherit them)."""
    earlier = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in earlier.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def loopback_gcs_env() -> dict[str, str]:
    """For the embedded Ray's processes: its GCS on a known loopback port, and that address
    as theirs. Ray's state API (Ray Train's placement-group cleaner asks it every second)
    otherwise takes the address from /tmp/ray's last-cluster file, which may name another
    or a dead cluster, and turns 127.0.0.1 into the host's network address, where the GCS
    does not listen: each run then waits 12 s at its end, and with another cluster's
    address the cleaner could remove this run's placement group."""
    port = free_port()
    return {
        "RAY_GCS_SERVER_PORT": str(port),
        "RAY_ADDRESS": f"127.0.0.1:{port}",
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",  # Ray's switch: local addresses stay local
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def check_port_free(port: int, what: str, flag: str) -> None:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            raise ClusterError(
                [f"port {port} for the {what} is in use on 127.0.0.1; choose another with "
                 f"{flag} PORT, or {flag} 0 for a free one"]
            ) from None  # fmt: skip


def dashboard_kwargs(port: int) -> dict:
    """ray.init arguments for the dashboard on loopback, with Train's run tracking on and
    the Prometheus export on a known port (raysim's own metrics appear there)."""
    if port:
        check_port_free(port, "Ray dashboard", "--dashboard-port")
    # Read by Ray Train in this process when the trainer is built: the Train page.
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


def dashboard_banner(dashboard_url: str, metrics_url: str | None) -> str:
    token = os.environ.get("RAY_AUTH_TOKEN_PATH", "~/.ray/auth_token")
    lines = [
        f"raysim: Ray dashboard at {dashboard_url} (Train page: the run; Cluster: the nodes)",
        f"        token authentication is on: paste the token from {token} "
        "(`ray get-auth-token` prints it) when the page asks",
    ]
    if metrics_url:
        lines.append(f"        raysim_* metrics (Prometheus text) at {metrics_url}")
    return "\n".join(lines)


def ray_logging_kwargs(verbose: bool) -> dict:
    """ray.init's logging arguments: Ray's own logs only when asked for."""
    return {
        "log_to_driver": verbose,
        "logging_level": logging.INFO if verbose else logging.WARNING,
        "configure_logging": True,
    }


@contextlib.contextmanager
def joined(address: str | None, verbose: bool = False):
    """One connection to an existing cluster (`address`) for a whole run or sweep: its
    hardware is read and the run made over it (joining twice cost 1–2 s a run). Without
    an address, or already connected, it does nothing."""
    import ray

    if address is None or ray.is_initialized():
        yield
        return
    join(address, **ray_logging_kwargs(verbose))
    try:
        yield
    finally:
        ray.shutdown()


def hardware_for(cfg: ExperimentConfig) -> Hardware:
    """This machine's hardware, or on an existing cluster (`address`) the cluster's."""
    return detect_hardware() if cfg.address is None else cluster_hardware(cfg.address)


def cluster_hardware(address: str) -> Hardware:
    """CPUs and GPUs of an existing Ray cluster, and one GPU's memory, asked of the cluster
    (the driver may have no GPU). Connects briefly unless connected already (`joined`)."""
    import ray

    connect_here = not ray.is_initialized()  # a sweep holds one connection for all runs
    if connect_here:
        join(address, logging_level=logging.WARNING, log_to_driver=False)
    try:
        resources = ray.cluster_resources()
        num_gpus = int(resources.get("GPU", 0))
        memory, name = 0, ""
        if num_gpus:
            ask = ray.remote(num_gpus=0.01, num_cpus=0)(_gpu_properties)
            memory, name = ray.get(ask.remote(), timeout=120)
        return Hardware(
            num_cpus=int(resources.get("CPU", 1)),
            num_gpus=num_gpus,
            gpu_memory_bytes=memory,
            gpu_name=name,
        )
    finally:
        if connect_here:
            ray.shutdown()


def join(address: str, **init_kwargs) -> None:
    """ray.init on an existing cluster; a failure names the usual causes.

    Ray 2.60's `ray start` turns token authentication on, and Ray sends its token to an
    explicit address only with RAY_AUTH_MODE=token: raysim leaves that choice to the user.
    """
    import ray

    from raysim.standing import read_state

    _quiet_ray_env()
    standing = read_state() if address == "auto" else None
    if standing is not None:
        # `raysim up`'s cluster, started with Ray's token authentication: send the token,
        # as Ray does for a cluster it finds on this host (its own helper, which keeps an
        # explicit RAY_AUTH_MODE).
        from ray._private.authentication.authentication_token_setup import (
            maybe_enable_token_auth_if_token_available,
        )

        os.environ.setdefault("RAY_ADDRESS", standing.address)
        maybe_enable_token_auth_if_token_available(warn_if_disabled=False)
    # The Train page of a dashboard on that cluster shows the run (read where the
    # trainer is built: here).
    os.environ.setdefault("RAY_TRAIN_ENABLE_STATE_TRACKING", "1")
    check_reachable(address)
    try:
        ray.init(address=address, **init_kwargs)
    except (ConnectionError, RuntimeError, ValueError, ray.exceptions.RayError) as err:
        first_line = str(err).strip().splitlines()[0][:300] if str(err).strip() else type(err)
        raise ClusterError(
            [f"cannot join the Ray cluster at address {address!r}: {first_line}. Check that "
             "it runs (`ray status --address ...`) and fix address (config) / --address; a "
             "cluster with token authentication (Ray's default) also needs RAY_AUTH_MODE=token "
             "and its token in ~/.ray/auth_token or RAY_AUTH_TOKEN"]
        ) from None  # fmt: skip


def check_reachable(address: str) -> None:
    """Ray retries an address where nothing listens for minutes; fail at once instead."""
    host, _, port = address.rpartition(":")
    if "://" in address or not host or not port.isdigit():
        return  # auto, or a Ray Client address: Ray resolves those
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as err:
        raise ClusterError(
            [f"nothing answers at address {address!r} ({err.strerror or err}); start the "
             "cluster (`raysim up`, or `ray start --head` on that host) or fix address "
             "(config) / --address"]
        ) from None  # fmt: skip


def _gpu_properties() -> tuple[int, str]:
    import torch

    props = torch.cuda.get_device_properties(0)
    return props.total_memory, props.name


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

    def __enter__(self) -> SimCluster:
        import ray

        _quiet_ray_env()
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
        resources = dict(self.plan.node_resources or {})
        cpus, gpus = int(resources.pop("CPU")), int(resources.pop("GPU", 0))
        for index in range(self.plan.num_workers):
            node = self.local_cluster.add_node(
                num_cpus=cpus, num_gpus=gpus, resources=resources,
                labels={NODE_LABEL: f"node-{index}"}, node_ip_address="127.0.0.1",
                include_dashboard=False,
            )  # fmt: skip
            self.nodes.append(node)

    def remove_node(self, index: int) -> None:
        """Take simulated node `index` away abruptly: its raylet and workers are killed."""
        node = self.nodes[index]
        if node is not None and node in self.local_cluster.worker_nodes:
            self.local_cluster.remove_node(node, allow_graceful=False)
            self.nodes[index] = None

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

        for index in range(len(self.nodes)):
            self.remove_node(index)
        if self.owned and ray.is_initialized():
            ray.shutdown()
        self.owned = False


def _fix_for(resource: str) -> str:
    if resource == DEVICE_RESOURCE:
        return (
            f"start the cluster with ray start --head --resources "
            f"'{{\"{DEVICE_RESOURCE}\": 10000}}' (the simulated device)"
        )
    if resource == "CPU":
        return "use fewer num_nodes, set cpus, or add CPUs to the cluster"
    return "lower gpu_fraction or num_nodes, or add GPUs to the cluster"
