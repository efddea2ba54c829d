"""The simulated cluster: an embedded local Ray with the device resource, or an existing one.

The only module (with experiment.py) that touches Ray's process lifecycle.
"""

from __future__ import annotations

import logging
import os
import socket

from raysim.config import ConfigError, ExperimentConfig
from raysim.plan import DEVICE_RESOURCE, Hardware, ResourcePlan, detect_hardware


class ClusterError(ConfigError):
    """The Ray cluster cannot host the plan; the message says what to start or change."""


def _quiet_ray_env() -> None:
    # Without the dashboard, Ray Train's placement-group cleaner logs a failed
    # state query every second; raysim's console follows metrics.jsonl instead.
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")


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


def hardware_for(cfg: ExperimentConfig) -> Hardware:
    """This machine's hardware, or on an existing cluster (`address`) the cluster's."""
    return detect_hardware() if cfg.address is None else cluster_hardware(cfg.address)


def cluster_hardware(address: str) -> Hardware:
    """CPUs and GPUs of an existing Ray cluster, and one GPU's memory, asked of the cluster
    (the driver may have no GPU). Connects briefly; SimCluster joins again for the run."""
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
    """Context manager: starts (or joins) Ray on enter; stops only a Ray it started."""

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

    def __enter__(self) -> SimCluster:
        import ray

        _quiet_ray_env()
        if not ray.is_initialized():
            if self.address is None:
                ray.init(**self._init_kwargs())
            else:
                join(self.address, **self._common_kwargs())
            self.owned = True
        try:
            self.check_resources(ray.cluster_resources())
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _common_kwargs(self) -> dict:
        return {
            "log_to_driver": self.verbose,
            "logging_level": logging.INFO if self.verbose else logging.WARNING,
            "configure_logging": True,
        }

    def _init_kwargs(self) -> dict:
        kwargs = {
            "address": "local",  # never join a `ray start` cluster by accident
            "num_cpus": self.plan.cluster_cpus,
            "resources": dict(self.plan.cluster_resources),
            "include_dashboard": False,
            "_node_ip_address": "127.0.0.1",
            **self._common_kwargs(),
        }
        if self.dashboard_port is not None:
            kwargs.update(dashboard_kwargs(self.dashboard_port))
            self.dashboard_url = f"http://127.0.0.1:{kwargs['dashboard_port']}"
            self.metrics_url = f"http://127.0.0.1:{kwargs['_metrics_export_port']}/metrics"
        return kwargs

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
