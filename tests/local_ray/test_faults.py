"""Checkpoints, exact resume and injected faults (a crash, a hang), on real Ray Train
restarts."""

import json
import re
import sys
import time

import pytest

import raysim
from raysim.cluster import NodeLossWatcher
from raysim.cluster.fault_watch import FaultMarkerWatcher
from raysim.config import load_config, parse_inject, replace
from raysim.rundir import FAULTS_DIR, read_lines
from tests.hang_runs import HANG_TIMEOUT_S, TOLD_WITHIN_S

pytestmark = pytest.mark.slow
EPOCHS = 3


def config(tmp_path, name, **overrides):
    values = dict(
        num_nodes=2, num_epochs=EPOCHS, max_steps_per_epoch=3, image_size=16, device="cpu",
        checkpoint_every=1, run_dir=str(tmp_path), run_name=name,
        shared_memory_allreduce=False,  # on real gloo, where a hang is watched for
    )  # fmt: skip
    values.update(overrides)
    return load_config(**values)


def epochs_of(run_dir):
    return [r for r in read_lines(run_dir / "metrics.jsonl") if r["kind"] == "epoch"]


def same_run(a, b):
    keys = ("epoch", "train_loss", "train_accuracy", "test_accuracy", "param_checksum")
    return [{k: e[k] for k in keys} for e in a] == [{k: e[k] for k in keys} for e in b]


@pytest.fixture(scope="module")
def uninterrupted(shared_ray, tmp_path_factory):
    result = raysim.run(config(tmp_path_factory.mktemp("clean"), "clean"), out=None)
    return epochs_of(result.run_dir)


def test_a_crash_recovers_a_second_exhausts_failures_and_resume_finishes_the_same_run(
    uninterrupted, tmp_path
):
    """One run: node-1 crashes in epoch 2 and the run recovers from epoch 1's checkpoint
    (max_failures 1); it crashes again in epoch 3, which ends the run naming it; --resume
    finishes it into bitwise the weights and metrics of a run never interrupted, even though
    node-1 hangs in its epoch 3 and it restarts from epoch 2's checkpoint (test_hang's hung
    run that finishes, merged here)."""
    # The pause lets the controller take in epochs 1-2's reports before the second crash:
    # with 0.4 s epochs it could otherwise see the failure first and drop them.
    faults = [
        parse_inject("worker_crash:rank=1,epoch=2,step=2"),
        parse_inject("slow_node:rank=1,epoch=3,step=1,seconds=3"),
        parse_inject("worker_crash:rank=1,epoch=3,step=2"),
    ]
    cfg = config(tmp_path, "stop", faults=faults, max_failures=1)
    with pytest.raises(raysim.RunFailedError) as info:
        raysim.run(cfg, out=None)
    records = read_lines(tmp_path / "stop" / "metrics.jsonl")
    error = next(r for r in records if r["kind"] == "error")
    assert error["faults"][0]["kind"] == "worker_crash" and 0 < error["detect_s"] < 15
    assert error["faults"][0]["epoch"] == 2
    (recovered,) = [r for r in records if r["kind"] == "recovered"]
    assert recovered["recover_s"] > error["detect_s"]
    # no epoch skipped or counted twice across the recovery
    assert [e["epoch"] for e in epochs_of(tmp_path / "stop")] == [1, 2]

    message = str(info.value)
    # Ray Train may or may not also report the peer's broken all-reduce (it may end rank 0
    # first); the crashed node leads, and any other node is told as the symptom it is.
    sections = re.findall(r"--- (node-\d) \(rank \d\) ---\n(.*)", message)
    assert sections[0][0] == "node-1"
    assert sections[0][1].startswith("its worker process died")
    assert all(text.startswith("lost its all-reduce peer") for _, text in sections[1:])
    assert "node-1 failed 2 time(s) (max_failures 1)" in message
    # The 3 s stall gave the controller time to take in epoch 2's report and checkpoint.
    assert "last good checkpoint: epoch 2" in message
    assert f"raysim run --resume {tmp_path / 'stop'}" in message

    # Each fault fired once: not again. The hang is a fault added for the resumed run (the
    # faults' indices name their markers: the first three stay claimed).
    hang = parse_inject("hang:rank=1,epoch=3,step=3")
    again = replace(cfg, faults=[*faults, hang], collective_timeout_s=HANG_TIMEOUT_S)
    resumed = raysim.run(again, out=None, resume=True)
    epochs = epochs_of(resumed.run_dir)
    assert [e["epoch"] for e in epochs] == [1, 2, 3], "no epoch skipped or counted twice"
    assert same_run(epochs, uninterrupted), "bitwise the same weights and metrics"
    assert resumed.summary["status"] == "finished"
    check_the_hang_is_counted(resumed)

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(resumed.run_dir / "tensorboard")).Reload()
    assert [s.step for s in events.Scalars("train/loss")] == [1, 2, 3]


def check_the_hang_is_counted(result):
    (hang,) = [f for f in result.summary["faults"] if f["kind"] == "hang"]
    assert (hang["rank"], hang["epoch"], hang["step"]) == (1, 3, 3)
    assert HANG_TIMEOUT_S - 1 < hang["detected_after_s"] < HANG_TIMEOUT_S + TOLD_WITHIN_S
    assert hang["lost_steps"] == 2, "epoch 3's steps 1-2, redone from epoch 2's checkpoint"
    assert hang["went_on"].startswith("restarted from epoch 2's checkpoint; epoch 3 reported")
    saved = json.loads((result.run_dir / "summary.json").read_text())
    assert saved["faults"] == result.summary["faults"]


def _marker(run_dir, index, kind, rank):
    (run_dir / FAULTS_DIR).mkdir(exist_ok=True)
    record = {"kind": kind, "rank": rank, "epoch": 1, "step": 1, "index": index, "fired_unix": 0}
    (run_dir / FAULTS_DIR / f"fault-{index}.json").write_text(json.dumps(record))


def test_node_loss_watcher_removes_each_lost_node_once(tmp_path, monkeypatch):
    """Markers from before it started (a resumed run) were handled by the run that fired them."""
    _marker(tmp_path, 0, "node_loss", 3)
    removed, told, reads = [], [], []
    watcher_module = sys.modules[FaultMarkerWatcher.__module__]
    fired_faults = watcher_module.fired_faults

    def counted(run_dir):
        reads.append(len(told))
        return fired_faults(run_dir)

    monkeypatch.setattr(watcher_module, "fired_faults", counted)

    def remove(rank):
        removed.append(rank)
        return f"raylet log of {rank}"

    with NodeLossWatcher(tmp_path, remove, lambda fault, log: told.append((fault, log))):
        _marker(tmp_path, 1, "slow_node", 1)
        _marker(tmp_path, 2, "node_loss", 2)
        deadline = time.time() + 10
        while reads.count(1) < 3 and time.time() < deadline:  # three reads after the removal
            time.sleep(0.05)
    assert reads.count(1) >= 3, reads
    assert removed == [2]
    assert [(fault["rank"], fault["epoch"], log) for fault, log in told] == [
        (2, 1, "raylet log of 2")
    ]
