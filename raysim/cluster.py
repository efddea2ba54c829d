"""The simulated cluster: an embedded local Ray with the device resource, or an existing one.

The only module (with experiment.py) that touches Ray's process lifecycle.
"""

from __future__ import annotations

import logging
import os

from raysim.config import ConfigError
from raysim.plan import DEVICE_RESOURCE, ResourcePlan


class ClusterError(ConfigError):
    """The Ray cluster cannot host the plan; the message says what to start or change."""


def _quiet_ray_env() -> None:
    # Without the dashboard, Ray Train's placement-group cleaner logs a failed
    # state query every second; raysim's console follows metrics.jsonl instead.
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")


class SimCluster:
    """Context manager: starts (or joins) Ray on enter; stops only a Ray it started."""

    def __init__(self, plan: ResourcePlan, address: str | None = None, verbose: bool = False):
        self.plan = plan
        self.address = address
        self.verbose = verbose
        self.owned = False

    def __enter__(self) -> SimCluster:
        import ray

        _quiet_ray_env()
        if not ray.is_initialized():
            ray.init(**self._init_kwargs())
            self.owned = True
        try:
            self.check_resources(ray.cluster_resources())
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _init_kwargs(self) -> dict:
        common = {
            "log_to_driver": self.verbose,
            "logging_level": logging.INFO if self.verbose else logging.WARNING,
            "configure_logging": True,
        }
        if self.address is not None:
            return {"address": self.address, **common}
        return {
            "address": "local",  # never join a `ray start` cluster by accident
            "num_cpus": self.plan.cluster_cpus,
            "resources": dict(self.plan.cluster_resources),
            "include_dashboard": False,
            "_node_ip_address": "127.0.0.1",
            **common,
        }

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
