"""Ray Train's per-run helper actors: the ones a raysim run starts, and the ones it leaves out.

Besides its controller and one worker per node, Ray Train 2.60 starts helper actors for
every run, each a Python process of its own that imports Ray while the workers start on
the same cores (leaving them out: BENCHMARKS.md, start-up). raysim leaves out:

- DatasetManager (DatasetsCallback): serves Ray Data shards; raysim passes the trainer
  no Ray Datasets.
- PlacementGroupCleaner: a detached actor that removes the worker group's placement
  group if the controller dies while the driver lives on; raysim's driver does that
  itself after fit() (placement_groups_released). Where the driver dies, Ray removes the
  job's placement groups with it.
- PreemptionWatcher: polls Ray for drained nodes (a spot instance's preemption, an
  autoscaler's scale-down); left out where every node of the cluster is this host, whose
  loss ends the run anyway (watches_preemption).

One it starts sooner: Ray Train's controller, once started, asks its AutoscalingCoordinator
(a detached actor, one per cluster) for the workers' resources and waits for the answer
before it starts any worker; on a new cluster that wait is the coordinator's start. The
driver starts the coordinator before fit() (coordinator_started), so it starts while the
controller does, on the core the controller leaves idle.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterable, Iterator

from raysim.cluster.env import scoped_env, unset_only

LEFT_OUT_CALLBACKS = frozenset({"DatasetsCallback", "PlacementGroupCleanerCallback"})
"""Ray Train's default callbacks that start the helpers raysim leaves out, by class name:
a Ray that renames one runs the helper again, which a test notices."""
PREEMPTION_WATCHER_ENV = "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER"
"""Read by Ray Train's controller; the trainer passes it on from the driver's environment."""
PREEMPTION_POLL_ENV = "RAY_TRAIN_PREEMPTION_POLL_INTERVAL_S"
"""How often Ray Train's watcher asks Ray Core for drained nodes (default 5 s); passed on
like the switch."""
INJECTED_PREEMPTION_POLL_S = 0.5
"""For a run with a preempt fault: a notice of a few seconds is seen within a step or two,
not after most of it is gone."""
HEALTH_CHECK_ENV = "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"
"""How often Ray Train's controller polls its workers (default 2 s), which is when it takes
their reports; passed on like the switch."""


def watches_preemption(node_addresses: Iterable[str], driver_address: str) -> bool:
    """Whether a run needs Ray Train's preemption watcher: only where a node other than
    the driver's host can be drained."""
    return any(address != driver_address for address in node_addresses)


def cluster_is_this_host() -> bool:
    """Every live node of the connected Ray is the driver's host (loopback included)."""
    import ray

    here = ray.util.get_node_ip_address()
    live = [node["NodeManagerAddress"] for node in ray.nodes() if node["Alive"]]
    return not watches_preemption(live, here)


@functools.cache
def lean_torch_trainer() -> type:
    """TorchTrainer without the default callbacks in LEFT_OUT_CALLBACKS (built on first
    use: importing Ray Train costs ~3 s)."""
    from ray.train.torch import TorchTrainer

    class LeanTorchTrainer(TorchTrainer):
        def _create_default_callbacks(self):
            callbacks = super()._create_default_callbacks()
            return [cb for cb in callbacks if type(cb).__name__ not in LEFT_OUT_CALLBACKS]

    return LeanTorchTrainer


def coordinator_started() -> bool:
    """Start (or find) Ray Train's AutoscalingCoordinator without waiting for it; False where
    this Ray has none by that name (the controller then starts whatever it uses)."""
    try:
        from ray.data._internal.cluster_autoscaler.default_autoscaling_coordinator import (
            get_or_create_autoscaling_coordinator,
        )
    except ImportError:
        return False
    get_or_create_autoscaling_coordinator()
    return True


@contextlib.contextmanager
def run_helpers(cluster_is_this_host: bool) -> Iterator[None]:
    """For one fit(): the autoscaling coordinator started, the preemption watcher off on a
    one-host cluster (unless the user set it), and the placement groups the fit left behind
    released afterwards."""
    settings = unset_only({PREEMPTION_WATCHER_ENV: "0"}) if cluster_is_this_host else {}
    coordinator_started()
    with scoped_env(settings), placement_groups_released():
        yield


def preemption_watch(injected: bool):
    """For a run that drains a node (a preempt fault): Ray Train's watcher on, polling
    every INJECTED_PREEMPTION_POLL_S unless the user set how often."""
    if not injected:
        return contextlib.nullcontext()
    poll = unset_only({PREEMPTION_POLL_ENV: str(INJECTED_PREEMPTION_POLL_S)})
    return scoped_env({PREEMPTION_WATCHER_ENV: "1", **poll})


def controller_polls(seconds: float):
    """Ray Train's controller polling its workers every `seconds` for one fit(), unless the
    user set how often."""
    return scoped_env(unset_only({HEALTH_CHECK_ENV: str(seconds)}))


@contextlib.contextmanager
def placement_groups_released() -> Iterator[None]:
    """Remove this job's placement groups made during the block and still held: Ray Train
    removes its worker group's own, unless its controller died, and a held one keeps the
    next run in this process from its resources."""
    import ray
    from ray.util.placement_group import (
        PlacementGroup,
        placement_group_table,
        remove_placement_group,
    )

    job = ray.get_runtime_context().get_job_id()
    before = set(placement_group_table())
    try:
        yield
    finally:
        # A cluster that went down with the fit holds nothing, and asking it would hide
        # the fit's own error.
        held = placement_group_table() if ray.is_initialized() else {}
        for group_id, info in held.items():
            # A placement group's ID ends with its job's (Ray's PlacementGroupID.of(job)):
            # other jobs' groups on a shared cluster are left alone.
            if group_id in before or not group_id.endswith(job) or info["state"] == "REMOVED":
                continue
            remove_placement_group(PlacementGroup(ray.PlacementGroupID.from_hex(group_id)))
