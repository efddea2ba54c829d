"""Ray Train's helper actors: the ones a run starts, and the ones raysim leaves out."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time

from raysim.cluster.train_helpers import (
    HEALTH_CHECK_ENV,
    PREEMPTION_POLL_ENV,
    PREEMPTION_WATCHER_ENV,
    controller_polls,
    coordinator_started,
    placement_groups_released,
    preemption_watch,
    run_helpers,
    watches_preemption,
)
from tests.run_checks import actors_started


def test_only_a_node_on_another_host_is_watched_for_preemption():
    assert not watches_preemption(["127.0.0.1"] * 5, "127.0.0.1")
    assert not watches_preemption([], "10.0.0.2")
    assert watches_preemption(["10.0.0.2", "10.0.0.3"], "10.0.0.2")


def test_the_watcher_is_off_on_one_host_unless_the_user_set_it(shared_ray, monkeypatch):
    monkeypatch.delenv(PREEMPTION_WATCHER_ENV, raising=False)
    with run_helpers(cluster_is_this_host=True):
        assert os.environ[PREEMPTION_WATCHER_ENV] == "0"
    assert PREEMPTION_WATCHER_ENV not in os.environ
    with run_helpers(cluster_is_this_host=False):
        assert PREEMPTION_WATCHER_ENV not in os.environ
    monkeypatch.setenv(PREEMPTION_WATCHER_ENV, "1")
    with run_helpers(cluster_is_this_host=True):
        assert os.environ[PREEMPTION_WATCHER_ENV] == "1"


def test_a_preempt_fault_has_the_notice_polled_often(monkeypatch):
    for name in (PREEMPTION_WATCHER_ENV, PREEMPTION_POLL_ENV):
        monkeypatch.delenv(name, raising=False)
    with preemption_watch(injected=True):
        assert os.environ[PREEMPTION_WATCHER_ENV] == "1"
        assert float(os.environ[PREEMPTION_POLL_ENV]) == 0.5
    assert PREEMPTION_POLL_ENV not in os.environ
    monkeypatch.setenv(PREEMPTION_POLL_ENV, "3")
    with preemption_watch(injected=True):
        assert os.environ[PREEMPTION_POLL_ENV] == "3", "the user's setting"
    with preemption_watch(injected=False):
        assert PREEMPTION_WATCHER_ENV not in os.environ


def test_the_controller_polls_as_planned_unless_the_user_set_it(monkeypatch):
    monkeypatch.delenv(HEALTH_CHECK_ENV, raising=False)
    with controller_polls(0.25):
        assert float(os.environ[HEALTH_CHECK_ENV]) == 0.25, "Ray Train's default is 2 s"
    assert HEALTH_CHECK_ENV not in os.environ
    monkeypatch.setenv(HEALTH_CHECK_ENV, "1.5")
    with controller_polls(0.25):
        assert os.environ[HEALTH_CHECK_ENV] == "1.5", "the user's setting"


def test_the_autoscaling_coordinator_is_started_before_the_controller_asks(shared_ray):
    """The actor Ray Train's controller asks for its workers' resources, by its name."""
    import ray

    def coordinator():
        return ray.get_actor("AutoscalingCoordinator", namespace="AutoscalingCoordinator")

    with contextlib.suppress(ValueError):  # one per cluster: an earlier run's, if any
        ray.kill(coordinator(), no_restart=True)
    for _ in range(300):  # its name is free once Ray has it dead
        try:
            coordinator()
        except ValueError:
            break
        time.sleep(0.1)
    with actors_started() as names:
        assert coordinator_started()
        ray.get(coordinator().__ray_ready__.remote(), timeout=120)
    assert names == ["_AutoscalingCoordinatorActor"]
    with actors_started() as names:  # found, not started again
        assert coordinator_started()
    assert names == []


OTHER_JOB = """
import sys, ray
from ray.util.placement_group import placement_group
ray.init(address=sys.argv[1], log_to_driver=False)
group = placement_group([{"CPU": 0.01}])
ray.get(group.ready())
print(group.id.hex(), flush=True)
sys.stdin.readline()
"""


def test_a_group_a_dead_controller_left_is_released_and_no_other(shared_ray):
    """What Ray Train's PlacementGroupCleaner did: a group whose creator died without
    removing it is held while the job lives; raysim removes it after the fit. A group made
    before the fit, or by another job on the same cluster, is not the run's."""
    import ray
    from ray.util.placement_group import (
        placement_group,
        placement_group_table,
        remove_placement_group,
    )

    @ray.remote(num_cpus=0)
    class Controller:
        def reserve(self) -> str:
            group = placement_group([{"CPU": 0.01}])
            ray.get(group.ready())
            return group.id.hex()

    before = placement_group([{"CPU": 0.01}])
    ray.get(before.ready())
    address = ray.get_runtime_context().gcs_address
    other = subprocess.Popen(
        [sys.executable, "-c", OTHER_JOB, address],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        with placement_groups_released():
            controller = Controller.remote()
            left = ray.get(controller.reserve.remote())
            ray.kill(controller)  # dies without removing its group
            theirs = other.stdout.readline().strip()
            assert placement_group_table()[left]["state"] == "CREATED", "Ray keeps it"
        table = placement_group_table()
        assert table[left]["state"] == "REMOVED"
        assert table[before.id.hex()]["state"] == "CREATED"
        assert table[theirs]["state"] == "CREATED", "another job's group is left alone"
    finally:
        other.communicate("done\n", timeout=60)
        remove_placement_group(before)


CONTROLLER_VIEW = """
import pathlib, pickle, sys
import ray.train.v2._internal.execution.controller.controller  # the controller's own imports
parts = pickle.loads(pathlib.Path(sys.argv[1]).read_bytes())
recorder = next(cb for cb in parts["callbacks"] if type(cb).__name__ == "MetricsRecorder")
tensorboard = next(t for t in recorder.trackers if type(t).__name__ == "TensorBoard")
tensorboard.log_epoch({"epoch": 1, "train_loss": 2.0, "samples_per_s": 9.0}, [])
tensorboard.close()
training = ("torch", "torchvision", "raysim.builtin.loop", "tests.local_ray.test_train_helpers")
print(sorted(m for m in training if m in sys.modules))
"""


def test_the_controller_opens_its_run_without_importing_torch_or_the_training(tmp_path):
    """What Ray Train's controller unpickles (the run's context, its callbacks) and the
    TensorBoard file it writes at each epoch need neither torch nor the training's
    modules: each run's controller starts without them (1.4 CPU-s, 500 MB here)."""
    from ray import cloudpickle

    from raysim.config import load_config
    from raysim.experiment import _trainer
    from raysim.node_program import node_program
    from raysim.plan import Hardware, make_plan

    cfg = load_config(num_nodes=2, num_epochs=1, device="cpu", run_dir=str(tmp_path))
    plan = make_plan(cfg, Hardware(num_cpus=2))
    for program in (node_program(None), node_program(users_fn)):
        trainer = _trainer(cfg, plan, tmp_path, program, None)
        parts = {"context": trainer.train_run_context}
        parts["callbacks"] = [*trainer._create_default_callbacks(), *trainer.run_config.callbacks]
        (tmp_path / "parts.pkl").write_bytes(cloudpickle.dumps(parts))
        seen = subprocess.run(
            [sys.executable, "-c", CONTROLLER_VIEW, str(tmp_path / "parts.pkl")],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        assert seen.stdout.strip() == "[]", (program.name, seen.stdout, seen.stderr[-2000:])
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))


def users_fn(config):
    import torch

    torch.zeros(1)
