"""Checks that several tiers' run tests share: the actors a run started, and its start-up stages."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest

LEFT_OUT = {"DatasetManager", "PlacementGroupCleaner", "PreemptionWatcher"}


@contextlib.contextmanager
def actors_started() -> Iterator[list[str]]:
    """The class names of the actors created in the block, from Ray's actor table."""
    import ray

    before = set(ray._private.state.actors())
    names: list[str] = []
    yield names
    after = ray._private.state.actors()
    names.extend(sorted(a["ActorClassName"] for key, a in after.items() if key not in before))


def check_run_actors(names: list[str], nodes: int) -> None:
    """A run's controller, workers and barrier, and none of the helpers raysim leaves out."""
    assert names.count("RayTrainWorker") == nodes, names
    assert {"TrainController", "SynchronizationActor"} <= set(names), names
    assert not LEFT_OUT & set(names), names


def check_startup_adds_up(summary):
    """Every stage a run passes is timed, none backwards; to the first batch they sum to
    the time to the first step."""
    stages = {s["stage"]: s["seconds"] for s in summary["startup"]["stages"]}
    assert list(stages)[-6:] == [
        "Ray Train: controller, worker group, process group",
        "node set-up: threads, device, memory cap",
        "the function: data and model built",
        "prepare: DDP wraps the model, hooks",
        "the first batch",
        "the first step",
    ]
    assert all(seconds >= 0 for seconds in stages.values()), stages
    assert stages["Ray Train: controller, worker group, process group"] > 0.5
    before_the_step = sum(list(stages.values())[:-1])
    assert before_the_step == pytest.approx(summary["time_to_first_step_s"])
    assert summary["time_to_first_step_s"] < summary["wall_time_s"] + stages[next(iter(stages))]


def check_link_acts(ranks: dict[str, list[dict]], modelled: float) -> None:
    """Each rank's epoch lines on loopback and on an emulated link (`ranks` by network name):
    on loopback nothing is modelled or added; on the link its buckets were modelled at least
    `modelled` seconds a step (the gradients' all-reduce; more where each bucket pays the
    latency), each held until then (real all-reduce plus the added delay) with no more
    added than modelled, and its steps took at least that long. Within one run, since two
    runs one after the other beside the suite's other process differ by more than the link."""
    assert set(ranks) == {"loopback", "1gbe"}
    for network, lines in ranks.items():
        assert sorted(line["rank"] for line in lines) == [0, 1]
        for line in lines:
            if network == "loopback":
                assert line["modelled_comm_s_per_step"] == 0, line
                assert line["added_comm_delay_s_per_step"] == 0, line
                continue
            link = line["modelled_comm_s_per_step"]
            assert 0.999 * modelled <= link <= 1.5 * modelled, line
            held = line["allreduce_wait_s_per_step"] + line["added_comm_delay_s_per_step"]
            assert held >= 0.99 * link and line["added_comm_delay_s_per_step"] <= link, line
            assert line["step_time_s"] >= 0.99 * link, line
